"""Online serving, without Spark or Dagster: the key-value store (`store`), the batch values' encoding and their
load without Spark (`batch_encoding`), streaming writes (`streaming_writer`), and fetches with the HTTP service
(`fetch`). The Spark job that builds upload tables is `feature_assets.offline.upload`."""
