"""Write selected packets back out: pcapng (keeps interfaces, comments and decryption secrets) or pcap.

The file goes to a temporary name next to the target and is renamed at the end, so an interrupted run never leaves
half a file, and an existing file is only replaced when the caller allows it. The input capture is never a target.
"""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

import numpy as np

from diagnose.capture import pcapng
from diagnose.capture.reader import CaptureInfo
from diagnose.errors import UsageError

PCAP_EXTENSIONS = {".pcap", ".cap", ".dmp"}


def _pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + _pad(value)


def _block(btype: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


class CaptureWriter:
    """Use as a context manager; call `write(chunk_buf, rows, info)` with the rows to keep."""

    def __init__(self, target: str, source: str, *, overwrite: bool = False, format: str | None = None):
        path = Path(target)
        if source != "-" and path.exists() and path.resolve() == Path(source).resolve():
            raise UsageError(f"{target}: refusing to overwrite the capture being read")
        if path.exists() and not overwrite:
            raise UsageError(f"{target}: file exists (use --overwrite to replace it)")
        self.path = path
        self.format = format or ("pcap" if path.suffix.lower() in PCAP_EXTENSIONS else "pcapng")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent.resolve()))
        self._tmp = Path(tmp)
        self._out = os.fdopen(fd, "wb")
        self._interfaces_written = 0
        self._secrets_written = 0
        self._pcap_linktype: int | None = None
        self.packets = 0

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, exc_type, *_) -> None:
        self._out.close()
        if exc_type is None:
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)

    def write(self, buf: np.ndarray, rows: np.ndarray, info: CaptureInfo) -> None:
        if self.format == "pcap":
            self._write_pcap(buf, rows, info)
        else:
            self._write_pcapng(buf, rows, info)
        self.packets += len(rows)

    # -- pcap -----------------------------------------------------------------------------------------------------
    def _write_pcap(self, buf, rows, info: CaptureInfo) -> None:
        if self._pcap_linktype is None:
            linktypes = {i.linktype for i in info.interfaces}
            if len(linktypes) > 1:
                raise UsageError(f"{self.path}: the packets have several link types; a .pcap holds one, "
                                 "write .pcapng instead")
            self._pcap_linktype = info.interfaces[0].linktype if info.interfaces else 1
            snaplen = max((i.snaplen for i in info.interfaces), default=262144) or 262144
            # nanosecond magic keeps every timestamp exact
            self._out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, snaplen, self._pcap_linktype))
        for r in rows:
            if r["linktype"] != self._pcap_linktype:
                raise UsageError(f"{self.path}: frame {r['frame']} has another link type; write .pcapng instead")
            sec, ns = divmod(int(r["ts"]), 1_000_000_000)
            data = buf[r["data"] : r["data"] + r["caplen"]].tobytes()
            self._out.write(struct.pack("<IIII", sec, ns, len(data), int(r["wirelen"])) + data)

    # -- pcapng ---------------------------------------------------------------------------------------------------
    def _write_pcapng(self, buf, rows, info: CaptureInfo) -> None:
        out = self._out
        if self._interfaces_written == 0:
            options = b""
            if info.sections:
                for comment in info.sections[0].comments:
                    options += _option(1, comment.encode())
            options += _option(4, b"diagnose") + _option(0, b"")
            out.write(_block(pcapng.SHB, struct.pack("<IHHq", pcapng.BYTE_ORDER_MAGIC, 1, 0, -1) + options))
        for iface in info.interfaces[self._interfaces_written :]:
            out.write(_block(pcapng.IDB, struct.pack("<HHI", iface.linktype, 0, iface.snaplen)
                             + _interface_options(iface)))
        self._interfaces_written = len(info.interfaces)
        for secret in info.secrets[self._secrets_written :]:
            out.write(_block(pcapng.DSB, struct.pack("<II", secret.secret_type, len(secret.data)) + _pad(secret.data)))
        self._secrets_written = len(info.secrets)
        for r in rows:
            ts = int(r["ts"])
            data = buf[r["data"] : r["data"] + r["caplen"]].tobytes()
            options = b""
            for comment in info.comments.get(int(r["frame"]), ()):
                options += _option(1, comment.encode())
            if options:
                options += _option(0, b"")
            body = struct.pack("<IIIII", int(r["iface"]), ts >> 32, ts & 0xFFFFFFFF, len(data), int(r["wirelen"]))
            out.write(_block(pcapng.EPB, body + _pad(data) + options))


def _interface_options(iface: pcapng.Interface) -> bytes:
    """The interface's own options, with timestamps restated in nanoseconds (the resolution we keep)."""
    options = b""
    if iface.name is not None:
        options += _option(2, iface.name.encode())
    if iface.description is not None:
        options += _option(3, iface.description.encode())
    for comment in iface.comments:
        options += _option(1, comment.encode())
    if iface.filter is not None:
        options += _option(11, b"\x00" + iface.filter.encode())
    if iface.os is not None:
        options += _option(12, iface.os.encode())
    if iface.fcslen is not None:
        options += _option(13, bytes([iface.fcslen]))
    options += _option(9, bytes([9]))
    return options + _option(0, b"")
