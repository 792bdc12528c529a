"""The only package that knows Dagster's asset model: compiled configs in, Definitions out."""

from feature_assets.definitions.factory import build_definitions, job_name, partitions_for

__all__ = ["build_definitions", "job_name", "partitions_for"]
