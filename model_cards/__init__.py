"""Jinja templates of hf_mtl's model cards, installed as the `hf_mtl.model_cards` package.

This file makes the folder a regular package: editable installs (`pip install -e .`) map `hf_mtl.model_cards` to
this repository-root folder only for regular packages, and `importlib.resources` then finds the templates.
"""
