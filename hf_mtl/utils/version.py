"""The installed hf_mtl version, read from the package metadata (setup.py holds the number)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """hf_mtl's version, or `"unknown"` for a source tree that is on the path but not installed."""
    try:
        return version("hf_mtl")
    except PackageNotFoundError:
        return "unknown"
