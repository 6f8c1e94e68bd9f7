"""One place that configures numba for every kernel.

* `@kernel`: compiled once, cached on disk, no GIL, no Python objects inside. The cache goes to a user cache
  directory (not site-packages, which may be read-only) unless NUMBA_CACHE_DIR is already set, so only the first run
  after install pays for compilation.
* `@inline`: small helpers compiled into their callers (numba IR inlining). A call between separately compiled numba
  functions takes and drops a reference on every array argument and checks an error status; in per-packet code that
  costs more than the work itself.

Loading a cached kernel: numba first "refreshes" its compiler context, which imports and registers every numba
implementation module (~0.25 s and ~15 MB, a third of `diagnose flows` on a million packets) although loading
compiled machine code needs none of it, only the runtime (NRT). Our kernels load with just the runtime, whose small
module is compiled at -O0 (LLVM's -O3 pipeline costs ~5 MB more in a process that compiles nothing else); if a
kernel is not cached, numba's compiler refreshes the context itself and compiles at NUMBA_OPT as usual.

numba marks a cached kernel stale only when the file defining it changes; kernels inline helpers from other modules,
so each kernel's cache stamp also carries a digest of every module that holds compiled code or constants frozen into
it: any edit there recompiles. (This uses a numba internal; if it moves, kernels are still cached, only without that
protection.)
"""

from __future__ import annotations

import hashlib
import os
import types
from functools import lru_cache
from pathlib import Path

if "NUMBA_CACHE_DIR" not in os.environ:
    _base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    os.environ["NUMBA_CACHE_DIR"] = str(Path(_base) / "diagnose" / "numba")

import numba  # noqa: E402  (must come after the cache directory is chosen)

_PACKAGE = Path(__file__).resolve().parent
_njit = numba.njit(cache=True, nogil=True, boundscheck=False)
inline = numba.njit(inline="always", nogil=True, boundscheck=False)


@lru_cache(maxsize=1)
def package_digest() -> str:
    """Digest of the modules that define kernels/inline helpers and of packet.py (its constants are compiled in)."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        source = path.read_bytes()
        if path.name == "packet.py" or b"@kernel" in source or b"@inline" in source:
            h.update(str(path.relative_to(_PACKAGE)).encode())
            h.update(source)
    return h.hexdigest()


def _load_with_runtime_only(cache, sig, target_context):
    from numba.core import config
    from numba.core.runtime import nrt

    if not getattr(nrt.rtsys, "_init", True) and hasattr(config, "_OptLevel"):
        # numba compiles its small runtime module in every process; at -O0 LLVM does not build its optimisation
        # pipeline for it (~5 MB measured, in a process that only loads cached machine code). Later compiles keep NUMBA_OPT.
        level, config.OPT = config.OPT, config._OptLevel(0)
        try:
            nrt.rtsys.initialize(target_context)
        finally:
            config.OPT = level
    return cache._load_overload(sig, target_context)


def kernel(fn):
    dispatcher = _njit(fn)
    cache = getattr(dispatcher, "_cache", None)
    if hasattr(cache, "_load_overload"):  # numba internals: without them kernels still load, only slower
        cache.load_overload = types.MethodType(_load_with_runtime_only, cache)
    cache_file = getattr(cache, "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, package_digest())
    return dispatcher
