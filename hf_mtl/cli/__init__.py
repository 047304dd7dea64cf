"""The `hf-mtl` command line (`main`), one module per subcommand in `commands/`."""

from .main import build_parser, main


__all__ = ["build_parser", "main"]
