"""Benchmarks and evaluations: `sightline bench ...` and `sightline eval ...`, printing JSON."""
