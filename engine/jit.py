"""One place that configures numba for every kernel.

Compiled kernels are cached on disk so only the first run after install pays for compilation. The cache goes to a
user cache directory (not site-packages, which may be read-only) unless NUMBA_CACHE_DIR is already set.
"""

from __future__ import annotations

import os
from pathlib import Path

if "NUMBA_CACHE_DIR" not in os.environ:
    _base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(Path(_base) / "diagnose" / "numba")

import numba  # noqa: E402  (must come after the cache directory is chosen)

# Kernels: compiled once, cached, no Python objects inside, no GIL needed.
kernel = numba.njit(cache=True, nogil=True, boundscheck=False)
