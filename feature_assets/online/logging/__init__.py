"""Fetch logging: encoding of served keys and values, sampling, and buffered writers to the log store."""
