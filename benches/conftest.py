"""Benchmarks run as smoke tests under plain `pytest` (--benchmark-disable, small sizes);
time them with `python -m pytest benches --benchmark-enable` or `edgepack bench`."""
