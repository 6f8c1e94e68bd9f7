"""Tie a cached kernel to the source of the whole decode package, not only to its own file.

numba stamps a cached kernel with the hash of the file that defines it. The decode kernels inline helpers from
every sibling module, so an edit to, say, ip.py would leave a stale compiled decode_rows in the cache. Adding the
hash of all the package's sources to the stamp makes any edit recompile. (This touches a numba internal; if it
moves, kernels are still cached, only without this protection.)
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def _package_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def stamp_with_package(dispatcher):
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, _package_digest())
    return dispatcher
