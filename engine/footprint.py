"""Give back memory the process holds but no longer uses.

* Loading llvmlite runs LLVM's static initialisers, which read 35-50 MB of its ~170 MB shared library into this
  process's resident set. Once the kernels are loaded the process runs their machine code and hardly touches LLVM
  again, but those pages stay mapped and count in its RSS. `release_compiler_pages()` drops them from the process's
  page tables (madvise MADV_DONTNEED); a page LLVM does use again (loading one more cached kernel) is mapped back from
  the page cache on first touch. Only read-only mappings of the library that hold no private copy of any page are
  released: their contents always equal the file's, so nothing can be lost.
* glibc's malloc (numpy's allocator) returns freed memory to the system only from the top of its heap: a run that
  frees many per-chunk arrays keeps their pages. `release_unused_memory()` also asks it for every free page
  (malloc_trim).
"""

from __future__ import annotations

import sys

LIBRARY = "libllvmlite.so"
_MADV_DONTNEED = 4
_libc = None
_ranges: list[tuple[int, int]] | None = None  # (start, length) of the library's clean read-only mappings


def release_unused_memory() -> None:
    """Both releases: call where a run's memory is about to peak, once the kernels it needs are loaded."""
    release_compiler_pages()
    libc = _linux_libc()
    if libc is not None and hasattr(libc, "malloc_trim"):  # glibc's; musl has none
        libc.malloc_trim(0)


def release_compiler_pages() -> int:
    """Release the library's clean read-only pages; returns the kB that were resident when its mappings were found
    (0 where this is not Linux, and on later calls). The mappings are found once (reading smaps takes ~6 ms); a
    later call only repeats the madvise, which costs microseconds when nothing came back, so it can follow every
    chunk: loading a kernel on first use reads ~10 MB of LLVM back."""
    global _ranges
    libc = _linux_libc()
    if libc is None:
        return 0
    released = 0
    if _ranges is None:
        try:
            with open("/proc/self/smaps", encoding="ascii", errors="replace") as smaps:
                found = list(clean_ranges(smaps, LIBRARY))
        except OSError:
            return 0
        if not found:  # not loaded (yet): look again next time
            return 0
        _ranges = [(start, end - start) for start, end, _ in found]
        released = sum(kb for _, _, kb in found)
    for start, length in _ranges:
        libc.madvise(start, length, _MADV_DONTNEED)
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


def _linux_libc():
    """glibc's madvise and malloc_trim with their argument types, or None where they are not to be had."""
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            import ctypes

            try:
                libc = ctypes.CDLL(None, use_errno=True)
                libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                libc.madvise.restype = ctypes.c_int
                if hasattr(libc, "malloc_trim"):
                    libc.malloc_trim.argtypes = [ctypes.c_size_t]
                    libc.malloc_trim.restype = ctypes.c_int
                _libc = libc
            except (OSError, AttributeError):
                pass
    return _libc or None
