"""Give back the pages of numba's compiler library that only its start-up read.

Loading llvmlite runs LLVM's static initialisers, which read 35-50 MB of its ~170 MB shared library into this
process's resident set. Once the kernels are loaded the process runs their machine code and hardly touches LLVM
again, but those pages stay mapped and count in its RSS. `release_compiler_pages()` drops them from the process's
page tables (madvise MADV_DONTNEED); a page LLVM does use again (loading one more cached kernel) is mapped back from
the page cache on first touch. Only read-only mappings of the library that hold no private copy of any page are
released: their contents always equal the file's, so nothing can be lost.
"""

from __future__ import annotations

import sys

LIBRARY = "libllvmlite.so"
_MADV_DONTNEED = 4
_madvise = None


def release_compiler_pages() -> int:
    """Release the library's clean read-only pages; returns the kB released (0 where this is not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
            ranges = list(clean_ranges(smaps, LIBRARY))
    except OSError:
        return 0
    madvise = _libc_madvise()
    released = 0
    for start, end, resident_kb in ranges:
        if madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += resident_kb
    return released


def clean_ranges(smaps_lines, library: str):
    """(start, end, resident kB) of each mapping of `library` in /proc/PID/smaps text that is not writable and holds
    no private (copied-on-write) page."""
    current = None
    for line in smaps_lines:
        first = line.split(None, 1)[0] if line.strip() else ""
        if "-" in first and not first.endswith(":"):  # a mapping's header: start-end perms offset dev inode path
            if current is not None and current[3]:
                yield tuple(current[:3])
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ours = len(fields) > 5 and fields[5].endswith(library) and "w" not in fields[1]
            current = [start, end, 0, ours]
        elif current is not None and current[3]:
            if first == "Rss:":
                current[2] = int(line.split()[1])
            elif first in ("Private_Dirty:", "Anonymous:") and int(line.split()[1]):
                current[3] = False  # relocated (RELRO) pages: private copies the file does not hold
    if current is not None and current[3]:
        yield tuple(current[:3])


def _libc_madvise():
    global _madvise
    if _madvise is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.madvise
        fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        fn.restype = ctypes.c_int
        _madvise = fn
    return _madvise
