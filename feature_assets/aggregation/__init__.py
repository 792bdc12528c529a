"""Aggregation shared by the offline engine and the online path: the operation registry, AggSpec, the numpy
kernels and their window driver, the IR algebra, per-key online evaluation and the stored-value codec."""
