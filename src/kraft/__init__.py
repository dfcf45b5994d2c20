"""Kraft: control plane and digital twin for AI data centers."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kraft")  # pyproject.toml's, the one place it is written
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
