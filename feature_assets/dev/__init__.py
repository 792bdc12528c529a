"""Demo and development tools, apart from the library: the quickstart runner, data generators and the
embedded MongoDB-protocol server and Kafka-protocol broker."""
