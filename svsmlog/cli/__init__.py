"""The ``svsmlog`` command line: keygen, info, verify, extract, export-key, simulate."""

from .app import app, main

__all__ = ["app", "main"]
