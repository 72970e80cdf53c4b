"""Command-line commands of run.py, one module per group; each imports what it needs lazily."""
