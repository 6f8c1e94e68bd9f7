"""One place that configures numba for every kernel.

* `@kernel`: compiled once, cached on disk, no GIL, no Python objects inside. The cache goes to a user cache
  directory (not site-packages, which may be read-only) unless NUMBA_CACHE_DIR is already set, so only the first run
  after install pays for compilation.
* `@inline`: small helpers compiled into their callers (numba IR inlining). A call between separately compiled numba
  functions takes and drops a reference on every array argument and checks an error status; in per-packet code that
  costs more than the work itself.

Loading a cached kernel: numba first "refreshes" its compiler context, which imports and registers every numba
implementation module (~0.25 s and ~15 MB, a third of `diagnose flows` on a million packets) although loading
compiled machine code needs none of it, only the runtime (NRT). Our kernels load with just the runtime. numba builds
the runtime's small LLVM module in every process, and that first use of LLVM's code generator costs ~24 MB of RSS and
~12 ms; we cache its machine code next to the kernels' (keyed like numba's own cache: versions, CPU, features), so a
process that only runs cached kernels never generates code. If a kernel is not cached, numba's compiler refreshes
the context itself and compiles as usual.

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

from diagnose.resources import save_whole, user_cache_dir

if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = str(user_cache_dir() / "numba")

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


def _runtime_cache_path(codegen) -> Path:
    import llvmlite
    from numba.core import config

    key = repr((numba.__version__, llvmlite.__version__, codegen.magic_tuple(), int(config.OPT)))
    return Path(os.environ["NUMBA_CACHE_DIR"]) / f"nrt-{hashlib.sha256(key.encode()).hexdigest()[:16]}.bin"


def _runtime_library(target_context):
    """numba's runtime module: its cached machine code, or compiled once and cached (object code + linking bitcode)."""
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import nrtdynmod

    codegen = target_context.codegen()
    path = _runtime_cache_path(codegen)
    try:
        blob = path.read_bytes()
        size = int.from_bytes(blob[:8], "little")
        return codegen.unserialize_library(("nrt", "object", (blob[8:8 + size], blob[8 + size:])))
    except Exception:  # absent, unreadable or from another build: compile it as numba would
        pass
    with global_compiler_lock:
        ir_module, library = nrtdynmod.create_nrt_module(target_context)
        library.enable_object_caching()
        library.add_ir_module(ir_module)
        library.finalize()
    _, _, (object_code, bitcode) = library.serialize_using_object_code()
    save_whole(path, len(object_code).to_bytes(8, "little") + object_code + bitcode)
    return library


def _initialize_runtime(target_context) -> None:
    """What numba's `rtsys.initialize` does, with the runtime module from our cache."""
    from llvmlite import binding
    from numba.core import config
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.runtime import _nrt_python, nrt

    with global_compiler_lock:
        if nrt.rtsys._init:
            return
        if config.NRT_STATS:
            _nrt_python.memsys_enable_stats()
        for name, address in _nrt_python.c_helpers.items():
            binding.add_symbol(name if name.startswith("_") else "NRT_" + name, address)
        nrt.rtsys._library = _runtime_library(target_context)
        nrt.rtsys._init = True


def _load_with_runtime_only(cache, sig, target_context):
    from numba.core.runtime import nrt

    if not getattr(nrt.rtsys, "_init", True):
        _initialize_runtime(target_context)
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
