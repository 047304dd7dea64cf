"""Recipes shipped with hf_mtl (installed as `hf_mtl.recipe_files`); see README.md here."""
