"""Online fetch path: the fetcher, request keys and the HTTP service (no Spark, no Dagster)."""
