"""Offline Spark work, DataFrames in and out: group-by daily tables, point-in-time joins, bootstrap, entity
mutations, staging queries, hot-key handling and the batch upload job."""
