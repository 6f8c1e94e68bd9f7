"""Locate the data folders (grammar/, playbooks/, reports/) shipped with the package, and the user's cache folder.

In an installed wheel they sit inside the package; in a source checkout run through a path to engine/ they are its
siblings. Both layouts are tried so tests and development runs see the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory of a data folder ('grammar', 'playbooks', 'reports')."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"data folder {name!r} not found next to {_PACKAGE_DIR}")


def user_cache_dir() -> Path:
    """Where compiled artefacts are kept between runs (numba kernels, filter parsers, playbook message templates):
    $XDG_CACHE_HOME/diagnose, else ~/.cache/diagnose. Never site-packages, which may be read-only."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diagnose"
