"""The benchmark's own scripts, run by `run.py bench` (cli/bench.py) as separate processes."""
