"""Benchmarks of the gateway against the built-in simulator's bench mode."""
