"""Benchmarks of the anomaly detector on public data sets."""
