"""Benchmarks: each prints its figures, the raw reference measured in the same run, and the
ratios, and ends with one JSON line."""
