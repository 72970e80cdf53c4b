"""What leaves or returns to the machine: per-platform bundle, run and pull functions."""
