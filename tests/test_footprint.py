"""footprint: only clean read-only pages of LLVM's library are released, and kernels still run after."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.footprint import LIBRARY, clean_ranges

SMAPS = """\
7f0000000000-7f0000004000 r--p 00000000 08:01 123 /venv/llvmlite/binding/libllvmlite.so
Rss:                  16 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000004000-7f0000104000 r-xp 00004000 08:01 123 /venv/llvmlite/binding/libllvmlite.so
Rss:                 512 kB
Private_Clean:        40 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000104000-7f0000108000 r--p 00104000 08:01 123 /venv/llvmlite/binding/libllvmlite.so
Rss:                  16 kB
Private_Dirty:        16 kB
Anonymous:            16 kB
7f0000108000-7f000010c000 rw-p 00108000 08:01 123 /venv/llvmlite/binding/libllvmlite.so
Rss:                   8 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
7f0000200000-7f0000300000 r-xp 00000000 08:01 456 /usr/lib/libc.so.6
Rss:                 900 kB
Anonymous:             0 kB
7f0000300000-7f0000301000 r-xp 00000000 00:00 0
Rss:                   4 kB
"""


def test_only_clean_read_only_mappings_of_the_library_are_picked():
    picked = list(clean_ranges(SMAPS.splitlines(True), LIBRARY))
    # the relocated (RELRO) mapping, the writable one, another library and an anonymous mapping stay
    assert picked == [(0x7F0000000000, 0x7F0000004000, 16), (0x7F0000004000, 0x7F0000104000, 512)]


PROBE = """
import json, sys
from diagnose.footprint import LIBRARY, clean_ranges, release_compiler_pages, release_unused_memory
from diagnose.pipeline import open_pass

def library_kb():
    with open("/proc/self/smaps") as smaps:
        return sum(kb for _, _, kb in clean_ranges(smaps, LIBRARY))

def conversations():
    run = open_pass(sys.argv[1])
    with run.capture:
        for _ in run.chunks():
            pass
    return run.flows.count

out = {"counted": conversations(), "before": library_kb()}  # kernels loaded: LLVM's start-up pages are resident
out["released"] = release_compiler_pages()
out["after"] = library_kb()
out["again"] = conversations()  # machine code and the JIT still work with the pages gone
release_compiler_pages()  # later calls reuse the mappings found by the first
out["after_again"] = library_kb()
release_unused_memory()  # and the C heap's free pages
out["after_trim"] = conversations()
print(json.dumps(out))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps (Linux)")
def test_release_shrinks_the_library_and_kernels_still_run():
    capture = Path(__file__).parent / "data" / "lab" / "healthy_http.pcap"
    # a process of its own: the test process's pages may have been released by an earlier test already
    done = subprocess.run([sys.executable, "-c", PROBE, str(capture)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["counted"] > 0 and out["before"] > 1024
    assert out["released"] >= out["before"] // 2
    assert out["after"] < out["before"] // 2
    assert out["again"] == out["counted"] and out["after_trim"] == out["counted"]
    assert out["after_again"] < out["before"] // 2
