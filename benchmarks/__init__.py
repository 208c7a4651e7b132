"""Side-by-side benchmarks of prefixlab (not installed with the package; see README.md)."""
