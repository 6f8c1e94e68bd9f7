"""Kernels load from numba's cache with only its runtime, whose machine code diagnose.jit caches too: a process that
runs cached kernels must not generate code for the runtime module, and a damaged runtime cache must be rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys

RUN_CACHED = """
import sys
from numba.core.runtime import nrt, nrtdynmod
def refuse(*args, **kwargs):
    raise AssertionError("the runtime module was compiled although it is cached")
nrtdynmod.create_nrt_module = refuse
from diagnose.pipeline import open_pass
run = open_pass(sys.argv[1])
with run.capture:
    packets = sum(len(chunk.table) for chunk in run.chunks())
print(packets, nrt.rtsys._init)
"""

REBUILD = """
import sys
from pathlib import Path
from diagnose import jit
from numba.core.registry import cpu_target
target = Path(sys.argv[1])
jit._runtime_cache_path = lambda codegen: target
target.write_bytes(b"not machine code")
library = jit._runtime_library(cpu_target.target_context)
print(library.get_pointer_to_function("NRT_incref") != 0, target.stat().st_size > 1000)
"""


def _python(script: str, *args: str) -> list[str]:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300,
                          check=True).stdout.split()


def test_cached_kernels_run_without_compiling_the_runtime():
    from oracles.fixtures import data_path

    capture = str(data_path("lab/healthy_http.pcap"))
    _python(RUN_CACHED.replace("nrtdynmod.create_nrt_module = refuse", ""), capture)  # fills the caches if empty
    packets, runtime_ready = _python(RUN_CACHED, capture)
    assert int(packets) > 0 and runtime_ready == "True"


def test_a_damaged_runtime_cache_is_compiled_again_and_rewritten(tmp_path):
    assert _python(REBUILD, str(tmp_path / "nrt.bin")) == ["True", "True"]


PRELOAD = """
import sys
import numpy as np
from diagnose import jit
from diagnose.filters import display_bytes
kernel = display_bytes._contains_kernel
if sys.argv[1] == "fill":  # first process: compile and cache the kernel by calling it
    out = np.zeros(1, bool)
    kernel(np.frombuffer(b"abc", np.uint8), np.zeros(1, np.int64), np.full(1, 3, np.int64), np.ones(1, bool),
           np.frombuffer(b"b", np.uint8), out)
    print(bool(out[0]))
else:
    compiled = []
    kernel._compiler.compile = lambda *a: compiled.append(a)  # preload must never compile
    before = len(kernel.overloads)
    loaded = jit.preload({display_bytes.__name__})
    again = jit.preload({display_bytes.__name__})  # loaded already: nothing more
    print(before, loaded >= 1, len(kernel.overloads) >= 1, again, len(compiled))
"""


def _preload_run(mode: str, cache_dir) -> list[str]:
    """PRELOAD in a process of its own, with a numba cache of this test's own."""
    return subprocess.run([sys.executable, "-c", PRELOAD, mode], capture_output=True, text=True, timeout=300,
                          check=True, env={**os.environ, "NUMBA_CACHE_DIR": str(cache_dir)}).stdout.split()


def test_preload_loads_cached_kernels_without_compiling(tmp_path):
    assert _preload_run("fill", tmp_path) == ["True"]
    assert _preload_run("load", tmp_path) == ["0", "True", "True", "0", "0"]


def test_preload_of_an_empty_cache_compiles_nothing(tmp_path):
    assert _preload_run("load", tmp_path) == ["0", "False", "False", "0", "0"]
