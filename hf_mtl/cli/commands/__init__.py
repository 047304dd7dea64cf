"""`hf-mtl` subcommands, one module each (see `hf_mtl/cli/main.py` for the contract)."""
