"""The byte source behind a capture: a file, a gzip file, or standard input ('-').

Opening classifies the input by its first bytes (never by file name) and fails with one clear CaptureError for the
cases users hit: missing file, a directory, an empty file, no permission.

An uncompressed regular file can also be seen through windows (`FileWindow`): arrays that map the file's bytes
instead of copying them. Everything else (gzip, standard input, pipes, files that cannot be mapped) is read with
`readinto`.
"""

from __future__ import annotations

import errno
import gzip
import io
import mmap
import os
import stat
import sys
import zlib
from typing import BinaryIO

import numpy as np

from diagnose.errors import CaptureError

GZIP_MAGIC = b"\x1f\x8b"

# madvise advice Python 3.11 does not name: Linux >= 5.14 maps a range's pages in one call, as read faults would
# (the page cache's pages, not private copies); older kernels answer EINVAL.
MADV_POPULATE_READ = 22


class ByteSource:
    """Sequential reader with a peek at the start; `readinto` fills as much as it can (0 at end of input)."""

    def __init__(self, path: str):
        self.path = path
        self.compressed = False
        self.size: int | None = None  # bytes on disk (compressed size for .gz), None for stdin
        self._raw = self._open_raw(path)
        head = self._raw.read(4)
        if head[:2] == GZIP_MAGIC:
            self.compressed = True
            self._raw.seek(0) if self._raw.seekable() else None
            fileobj = self._raw if self._raw.seekable() else _Prefixed(head, self._raw)
            self._stream: BinaryIO = gzip.GzipFile(fileobj=fileobj, mode="rb")
            try:
                head = self._stream.read(4)
            except (OSError, EOFError, zlib.error) as exc:
                raise CaptureError(path, f"damaged gzip data ({exc})") from None
        else:
            self._stream = self._raw
        self._pending = head
        self.head = head
        self.consumed = 0  # bytes handed out so far (uncompressed)
        self._windowed_to: int | None = None  # end of the file bytes handed out through windows

    @staticmethod
    def _open_raw(path: str) -> BinaryIO:
        if path == "-":
            return sys.stdin.buffer
        if os.path.isdir(path):
            raise CaptureError(path, "is a directory, not a capture file")
        try:
            return open(path, "rb")  # noqa: SIM115 (closed by close())
        except FileNotFoundError:
            raise CaptureError(path, "no such file") from None
        except PermissionError:
            raise CaptureError(path, "permission denied") from None
        except OSError as exc:
            raise CaptureError(path, exc.strerror or str(exc)) from None

    def disk_position(self) -> int:
        """Bytes read from the underlying file so far (for progress on compressed input)."""
        if self._windowed_to is not None:
            return self._windowed_to
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return self.consumed

    def readinto(self, view: memoryview) -> int:
        n = 0
        if self._pending:
            k = min(len(self._pending), len(view))
            view[:k] = self._pending[:k]
            self._pending = self._pending[k:]
            n = k
        while n < len(view):
            try:
                got = self._stream.readinto(view[n:])
            except (OSError, EOFError, zlib.error) as exc:
                if self.compressed:
                    # A cut-off .gz is like a cut-off capture: keep what was decompressed.
                    self.gzip_error = str(exc) or "unexpected end of gzip data"
                    break
                raise CaptureError(self.path, f"read error: {exc}") from None
            if not got:
                break
            n += got
        self.consumed += n
        return n

    # -- windows --------------------------------------------------------------------------------------------------
    def mappable(self) -> bool:
        """True for an uncompressed regular file that a memory mapping can show (tried on its first page)."""
        if self.compressed or self._raw is sys.stdin.buffer:
            return False
        try:
            fd = self._raw.fileno()
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size < len(self.head):  # /proc-like files claim size 0
                return False
            mmap.mmap(fd, min(st.st_size, mmap.ALLOCATIONGRANULARITY), access=mmap.ACCESS_COPY).close()
        except (OSError, ValueError, OverflowError, io.UnsupportedOperation):
            return False
        return True

    def file_size(self) -> int:
        """The file's size now (a capture still being written grows while it is read)."""
        return os.fstat(self._raw.fileno()).st_size

    def window(self, lo: int, hi: int, slack: int = 0) -> FileWindow:
        """File bytes from lo (a multiple of mmap.ALLOCATIONGRANULARITY) to hi, followed by up to `slack` more bytes
        of the file (mapped, never read ahead: a kernel reading a little past the last record of a block finds
        file bytes there, as it finds stale bytes past the fill of a read buffer). Counts as read up to hi."""
        end = max(hi, min(hi + slack, self.file_size()))
        self._windowed_to = max(self._windowed_to or 0, hi)
        try:
            mapping = _map(self._raw.fileno(), lo, end)
            return FileWindow(lo, np.frombuffer(mapping, np.uint8), mapping)
        except (OSError, ValueError, OverflowError):  # no mapping (address space, a file system without mmap):
            pass  # the same bytes, read
        array = np.empty(end - lo, np.uint8)
        self._raw.seek(lo)
        got = 0
        while got < len(array):
            n = self._raw.readinto(memoryview(array)[got:])
            if not n:
                break
            got += n
        if got < hi - lo:
            raise CaptureError(self.path, f"read error: the file ends at byte {lo + got} while being read")
        return FileWindow(lo, array)

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._stream.close()
            self._raw.close()

    gzip_error: str | None = None


def _map(fd: int, lo: int, end: int) -> mmap.mmap:
    # Copy-on-write (MAP_PRIVATE): the array is writable like a read buffer, so numba kernels see the very same array
    # type (a read-only one would compile every kernel again, and a write would fail inside one), and a write could
    # never reach the file. Reading maps the page cache's pages as they are: nothing is copied.
    return mmap.mmap(fd, end - lo, access=mmap.ACCESS_COPY, offset=lo)


class FileWindow:
    """Bytes of a file from offset `lo`: `array` maps them (or, when mapping failed, holds a copy).

    A mapping's pages count in the process's RSS once touched, until dropped or unmapped; the mapping itself goes
    when the last array viewing it does."""

    __slots__ = ("lo", "array", "_map")

    _populate_works = sys.platform.startswith("linux")  # MADV_POPULATE_READ is Linux's (other systems: touch pages)

    def __init__(self, lo: int, array: np.ndarray, mapping: mmap.mmap | None = None):
        self.lo = lo
        self.array = array
        self._map = mapping

    def populate(self, start: int, stop: int) -> None:
        """Fault array[start:stop] in now, on this thread, so that the faults do not land on the thread that decodes
        the window (and a file not in the page cache is read here)."""
        m = self._map
        start -= start % mmap.PAGESIZE
        if m is None or stop <= start:
            return
        if FileWindow._populate_works:
            try:
                m.madvise(MADV_POPULATE_READ, start, stop - start)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EFAULT/EIO: the file shrank or failed; the reader will see it
                    return
                FileWindow._populate_works = False  # Linux before 5.14
        self.array[start:stop:mmap.PAGESIZE].max()  # one byte per page: one fault each (numpy drops the GIL)

    def drop(self) -> None:
        """Give the window's pages back (nobody may read the window any more). Reading a dropped page of a file
        mapping faults it in again from the file, so dropping too early costs time, never correctness (only a
        byte written into the window, copy-on-write, would be lost: nothing writes into chunk buffers). Without
        madvise (Windows) the pages go when the mapping does, with the last array viewing it."""
        m = self._map
        if m is not None and hasattr(m, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
            try:
                m.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass


class _Prefixed(io.RawIOBase):
    """Puts back bytes already read from a non-seekable stream (stdin) in front of it."""

    def __init__(self, prefix: bytes, rest: BinaryIO):
        self._prefix = prefix
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        if self._prefix:
            k = min(len(b), len(self._prefix))
            b[:k] = self._prefix[:k]
            self._prefix = self._prefix[k:]
            return k
        data = self._rest.read(len(b))
        b[: len(data)] = data
        return len(data)
