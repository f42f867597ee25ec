"""Timing and memory measurements: attention kernels across N, decoding, training throughput
(pytest-benchmark files bench_*.py with their conftest), fresh-process peak memory, devices."""
