"""Throughput and latency measurements; each ``bench_*.py`` module prints a one-line summary."""
