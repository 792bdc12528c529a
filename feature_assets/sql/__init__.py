"""Spark SQL outside Spark: the column types of streamed rows and the query expressions applied to them."""
