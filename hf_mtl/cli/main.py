"""`hf-mtl` command line: one subcommand per module in `hf_mtl/cli/commands/`.

A command module defines `register(subparsers)` (adds its parser and sets `func=run` via `set_defaults`) and
`run(args) -> int`. User errors (`HfMtlError`, `ValueError`, `FileNotFoundError`, `KeyError` from bad input) and OS
errors (`<path>: <reason>`, a full disk named as such) print one clean line (`hf-mtl: error: ...`) and exit with
status 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from . import commands


USER_ERRORS = (ValueError, FileNotFoundError, KeyError, TypeError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-mtl", description="Multi-task training for Hugging Face Transformers.")
    parser.add_argument("--debug", action="store_true", help="Show full tracebacks for errors.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if not module_info.name.startswith("_"):
            importlib.import_module(f"{commands.__name__}.{module_info.name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    # argparse takes a command's positionals in one go, so `predict DIR --task t "some text"` leaves the text over;
    # a command that sets `extra_positionals="<dest>"` receives such leftovers (anything not looking like an option).
    target = getattr(args, "extra_positionals", None)
    if extras and target and not any(extra.startswith("-") for extra in extras):
        setattr(args, target, list(getattr(args, target) or []) + extras)
    elif extras:
        parser.error(f"unrecognized arguments: {' '.join(extras)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as error:
        if args.debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"hf-mtl: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:  # after USER_ERRORS: FileNotFoundError is an OSError with its own message
        if args.debug:
            raise
        print(f"hf-mtl: error: {describe_os_error(error)}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        if args.debug or not _looks_like_a_failed_write(error):
            raise
        print(f"hf-mtl: error: a file write failed ({str(error).splitlines()[0][:200]}): the disk is probably full "
              "(no space left); free space and resume from the last complete checkpoint.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hf-mtl: interrupted", file=sys.stderr)
        return 130


def describe_os_error(error: OSError) -> str:
    """`<path>: <reason>`, naming a full disk in words a user can act on."""
    import errno

    reason = error.strerror or str(error)
    if error.errno == errno.ENOSPC:
        reason = "no space left on the device; free space and resume from the last complete checkpoint"
    return f"{error.filename}: {reason}" if error.filename else reason


def _looks_like_a_failed_write(error: RuntimeError) -> bool:
    # torch's serializer reports a short write (a full disk) as "unexpected pos N vs M" or a failed file write.
    text = str(error)
    return "unexpected pos" in text or "PytorchStreamWriter failed" in text


if __name__ == "__main__":
    sys.exit(main())
