"""Kernels load from numba's cache with only its runtime, whose machine code diagnose.jit caches too: a process that
runs cached kernels must not generate code for the runtime module, and a damaged runtime cache must be rebuilt."""

from __future__ import annotations

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
