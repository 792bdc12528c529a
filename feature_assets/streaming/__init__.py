"""Kafka consumers and decoders that keep the online store's streaming datasets fresh (home of the streaming job)."""
