"""Kernels load from numba's cache with only its runtime (diagnose.jit): the runtime module is built at -O0, and the
optimisation level every later compile uses must be what it was (NUMBA_OPT, -O3 by default)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from numba.core import config
before = (int(config.OPT), config.OPT.is_opt_max)
from diagnose.pipeline import open_pass
run = open_pass(sys.argv[1])
with run.capture:
    packets = sum(len(chunk.table) for chunk in run.chunks())
from numba.core.runtime import nrt
print(packets, nrt.rtsys._init, before == (int(config.OPT), config.OPT.is_opt_max), int(config.OPT))
"""


def test_kernels_run_and_the_optimisation_level_is_kept(tmp_path):
    from oracles.fixtures import data_path

    capture = data_path("lab/healthy_http.pcap")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_OPT"}
    out = subprocess.run([sys.executable, "-c", "import sys\n" + SCRIPT, str(capture)], env=env, capture_output=True,
                         text=True, timeout=300, check=True).stdout.split()
    packets, runtime_ready, kept, level = int(out[0]), out[1] == "True", out[2] == "True", int(out[3])
    assert packets > 0 and runtime_ready
    assert kept and level == 3
