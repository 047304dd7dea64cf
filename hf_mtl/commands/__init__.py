"""`hf-mtl` subcommands, one module each (see `hf_mtl/cli.py` for the contract)."""
