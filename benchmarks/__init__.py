"""Benchmarks of hf_mtl against plain Transformers: `python -m benchmarks` (or `hf-mtl bench` from a source checkout).

Not part of the installed package: run from the repository root. See `benchmarks/README.md`.
"""
