"""The ``svsmlog`` command line: keygen, info, verify, extract, export-key, simulate.

``main`` answers ``svsmlog --version`` before anything else is imported: building the typer
app pulls in typer, rich, construct and cryptography (about 0.15 s), more than the version
is worth. Every other command line goes to ``svsmlog.cli.app``, imported on first use.
"""

from __future__ import annotations

import os
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import app as app

__all__ = ["app", "main", "version"]


def version() -> str:
    """The installed distribution's version, as ``importlib.metadata.version("svsmlog")``
    finds it (the first ``svsmlog-*.dist-info`` or ``.egg-info`` along ``sys.path``), read
    without importing ``importlib.metadata`` (30 ms of email, zipfile, csv and pathlib)."""
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if not name.startswith("svsmlog-"):
                continue
            if name.endswith(".dist-info"):
                meta = os.path.join(entry or ".", name, "METADATA")
            elif name.endswith(".egg-info"):
                meta = os.path.join(entry or ".", name, "PKG-INFO")
            else:
                continue
            found = _metadata_version(meta)
            if found is not None:
                return found
    return _slow_version()


def _metadata_version(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("Version:"):
                    return line[len("Version:") :].strip()
                if line in ("\n", "\r\n"):  # the end of the headers
                    break
    except OSError:
        pass
    return None


def _slow_version() -> str:  # pragma: no cover - only where no metadata directory is on sys.path
    from importlib import metadata

    try:
        return metadata.version("svsmlog")
    except metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    """The console script (``svsmlog.cli:main``)."""
    args = sys.argv[1:] if argv is None else argv
    if list(args) == ["--version"]:
        print(f"svsmlog {version()}")
        return 0
    from .app import main as app_main

    return app_main(argv)


class _Package(types.ModuleType):
    """``svsmlog.cli.app`` is the typer app, as it always was, imported on first use. A
    property, because importing the submodule ``svsmlog.cli.app`` binds that module to the
    package's ``app`` attribute: the setter keeps the app in its place."""

    @property
    def app(self) -> Any:
        from .app import app

        return app

    @app.setter
    def app(self, value: Any) -> None:
        pass


sys.modules[__name__].__class__ = _Package
