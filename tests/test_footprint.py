"""footprint: only clean read-only pages of LLVM's library are released, and kernels still run after."""

import sys
from pathlib import Path

import pytest

from diagnose.footprint import LIBRARY, clean_ranges, release_compiler_pages, release_unused_memory

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


def _library_rss_kb() -> int:
    with open("/proc/self/smaps") as smaps:
        return sum(kb for _, _, kb in clean_ranges(smaps, LIBRARY))


def _conversations(path) -> int:
    from diagnose.pipeline import open_pass

    run = open_pass(str(path))
    with run.capture:
        for _ in run.chunks():
            pass
    return run.flows.count


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/smaps (Linux)")
def test_release_shrinks_the_library_and_kernels_still_run():
    capture = Path(__file__).parent / "data" / "lab" / "healthy_http.pcap"
    counted = _conversations(capture)  # kernels loaded: LLVM's start-up pages are resident
    before = _library_rss_kb()
    assert counted > 0 and before > 1024
    released = release_compiler_pages()
    assert released >= before // 2
    assert _library_rss_kb() < before // 2
    assert _conversations(capture) == counted  # machine code and the JIT still work with the pages gone
    release_unused_memory()  # the same again, and the C heap's free pages
    assert _conversations(capture) == counted

