"""Benchmarks of avdiar, run as modules from the repository root: `python -m bench.NAME`
(bench/README.md lists them)."""
