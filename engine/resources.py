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


def save_whole(path: Path, data: bytes) -> None:
    """Put a cache file in place: written under a name of this process's own, then renamed, so a process starting
    beside this one reads the old file or the whole new one, never half of it. A cache that cannot be written
    (read-only home, full disk) only costs the rebuild next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError:
        pass
