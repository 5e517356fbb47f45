"""Benchmarks of stbln_jax, apart from the package: `python -m benchmarks.model`."""
