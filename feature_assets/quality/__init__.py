"""Data quality: stats and drift of join outputs and logs, online/offline consistency (sketch-based)."""
