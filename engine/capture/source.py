"""The byte source behind a capture: a file, a gzip file, or standard input ('-').

Opening classifies the input by its first bytes (never by file name) and fails with one clear CaptureError for the
cases users hit: missing file, a directory, an empty file, no permission.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import zlib
from typing import BinaryIO

from diagnose.errors import CaptureError

GZIP_MAGIC = b"\x1f\x8b"


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

    def close(self) -> None:
        if self._raw is not sys.stdin.buffer:
            self._stream.close()
            self._raw.close()

    gzip_error: str | None = None


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
