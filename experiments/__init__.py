"""Command-line entry points: run_toy, reproduce, sweep, ..."""
