"""Kraft: control plane and digital twin for AI data centers."""

__version__ = "0.1.0"
