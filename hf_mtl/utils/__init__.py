"""Helpers with no hf_mtl dependencies beyond `errors`: the registry, plotting, input checks, safe loading."""
