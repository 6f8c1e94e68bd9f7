"""Follow TCP stream: one connection's bytes in both directions, in the order they became readable, like
Wireshark's Follow TCP Stream and `tshark -q -z follow,tcp,ascii|hex|raw,N`.

Node 0 is the sender of the stream's first packet. Each direction is reassembled (diagnose.reassembly): a
retransmission is shown once, out-of-order data when the hole before it is filled, and data the peer acknowledged
but the capture never had as "[N bytes missing in capture file]" (Wireshark's words and their NUL, shown in
place of the data).
Each packet's new bytes are one chunk; chunks of node 1 are indented by a tab.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import numpy as np

from diagnose.packet import ST_ICMP_ERROR, ST_REASSEMBLED, ST_TRUNCATED, TH_ACK, TH_SYN
from diagnose.reassembly import Direction, StreamConsumer

RULE = "=" * 67
FORMATS = ("ascii", "hex", "raw")


@dataclass
class Chunk:
    node: int  # 0 or 1
    data: bytes
    frame: int | None  # the packet that made these bytes readable
    missing: int = 0  # > 0: a hole of this many bytes (data holds Wireshark's text for it)


@dataclass
class FollowResult:
    stream: int
    nodes: list[str] = field(default_factory=list)  # "addr:port" of node 0 and node 1 ([v6]:port for IPv6)
    chunks: list[Chunk] = field(default_factory=list)
    packets: int = 0

    def bytes_of(self, node: int) -> int:
        return sum(len(c.data) for c in self.chunks if c.node == node and not c.missing)


class _Recorder(StreamConsumer):
    """Collects what a direction delivers, one chunk per delivery."""

    def __init__(self, result: FollowResult, node: int, frames: list):
        self.result, self.node, self.frames = result, node, frames

    def feed(self, data, n: int, row) -> None:
        if data:
            self.result.chunks.append(Chunk(self.node, bytes(data), self._frame(row)))

    def gap(self, n: int, row) -> None:
        text = f"[{n} bytes missing in capture file]".encode() + b"\0"  # Wireshark's text, NUL included
        self.result.chunks.append(Chunk(self.node, text, self._frame(row), missing=n))

    def uncaptured(self, n: int, row) -> None:
        """Wireshark shows the captured part of a packet cut by the snapshot length, and says nothing more."""

    def _frame(self, row):
        return self.frames[0]


def _endpoint(ipv: int, hi: int, lo: int, port: int) -> str:
    if ipv == 6:
        return f"[{ipaddress.IPv6Address((hi << 64) | lo)}]:{port}"
    return f"{ipaddress.IPv4Address(lo & 0xFFFFFFFF)}:{port}"


def follow_stream(path: str, stream: int) -> FollowResult:
    """Reassemble TCP stream `stream` (tcp.stream numbering) of a capture."""
    from diagnose.pipeline import open_pass

    result = FollowResult(stream)
    current_frame = [None]
    directions: list[Direction | None] = [None, None]
    recorders = [_Recorder(result, 0, current_frame), _Recorder(result, 1, current_frame)]
    run = open_pass(path)
    with run.capture:
        for chunk in run.chunks():
            table = chunk.table
            # Wireshark follows packets whose TCP header it could read: not ICMP errors quoting the flow, not
            # packets whose header the snapshot length cut (they do not even decide which side is node 0)
            rows = np.nonzero((table["stream"] == stream) & (table["ip_proto"] == 6) & (table["l4_off"] >= 0)
                              & ((table["status"] & (ST_ICMP_ERROR | ST_TRUNCATED)) == 0))[0]
            if not len(rows):
                continue
            buf = chunk.buf
            for i in rows.tolist():
                r = table[i]
                if not result.nodes:
                    dst_port = int(r["dport"])
                    result.nodes = [_endpoint(int(r["ipv"]), int(r["src_hi"]), int(r["src_lo"]), int(r["sport"])),
                                    _endpoint(int(r["ipv"]), int(r["dst_hi"]), int(r["dst_lo"]), dst_port)]
                result.packets += 1
                d = int(r["dir"])
                current_frame[0] = int(r["frame"])
                flags = int(r["tcp_flags"])
                seq = int(r["tcp_seq"])
                if directions[d] is None:
                    directions[d] = Direction((seq + 1) if flags & TH_SYN else seq, recorders[d])
                other = directions[1 - d]
                if flags & TH_ACK and other is not None and other.pending:
                    other.acked(int(r["tcp_ack"]), i)
                plen = int(r["payload_len"])
                if plen > 0 and r["payload_off"] >= 0:
                    start = int(r["data"]) + int(r["payload_off"])
                    if int(r["status"]) & ST_REASSEMBLED:  # the datagram was rebuilt after the frames
                        avail = len(buf) - start
                    else:
                        avail = int(r["caplen"]) - int(r["payload_off"])
                    data = buf[start: start + max(0, min(plen, avail))].tobytes()
                    directions[d].segment(seq + (1 if flags & TH_SYN else 0), data, plen, i)
    # Data still held behind a hole when the capture ends is not shown (tshark does not show it either).
    return result


# ---- rendering ---------------------------------------------------------------------------------------------------

def _ascii(data: bytes) -> str:
    """Printable ASCII, CR and LF as they are; any other byte (TAB too) as '.'."""
    return "".join(chr(b) if 32 <= b < 127 or b == 10 or b == 13 else "." for b in data)


def _hex_lines(data: bytes, offset: int) -> list[str]:
    """tshark's hex view: offset, 16 bytes in two groups of 8, their characters with a space after the 8th; like
    tshark, a line never ends with one space more than it has columns for (one trailing space is dropped)."""
    lines = []
    for pos in range(0, len(data), 16):
        row = data[pos: pos + 16]
        first, second = row[:8], row[8:]
        hexes = "".join(f"{b:02x} " for b in first)
        if second:
            hexes += " " + "".join(f"{b:02x} " for b in second)
        shown = "".join(chr(b) if 32 <= b < 127 else "." for b in first)
        if len(first) == 8:
            shown += " " + "".join(chr(b) if 32 <= b < 127 else "." for b in second)
        if shown.endswith(" "):
            shown = shown[:-1]
        lines.append(f"{offset + pos:08X}  {hexes:<49} {shown}")
    return lines


def render(result: FollowResult, fmt: str = "ascii") -> str:
    """The text tshark prints for `-q -z follow,tcp,<fmt>,<stream>`."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown follow format {fmt!r} (ascii, hex or raw)")
    out = ["", RULE, f"Follow: tcp,{fmt}", f"Filter: tcp.stream eq {result.stream}"]
    nodes = result.nodes or [":0", ":0"]  # tshark's lines for a stream with no packet
    out.append(f"Node 0: {nodes[0]}")
    out.append(f"Node 1: {nodes[1]}")
    offsets = [0, 0]
    for c in result.chunks:
        indent = "\t" if c.node else ""
        if fmt == "ascii":
            out.append(f"{indent}{len(c.data)}")
            out.append(_ascii(c.data))
        elif fmt == "hex":
            out.extend(indent + line for line in _hex_lines(c.data, offsets[c.node]))
        else:
            out.append(indent + c.data.hex())
        offsets[c.node] += len(c.data)
    out.append(RULE)
    return "\n".join(out) + "\n"


def to_json(result: FollowResult) -> dict:
    """A stable JSON form: nodes, then chunks with their node, first frame, length and bytes (text and hex)."""
    return {
        "stream": result.stream,
        "nodes": result.nodes,
        "packets": result.packets,
        "bytes": [result.bytes_of(0), result.bytes_of(1)],
        "chunks": [{"node": c.node, "frame": c.frame, "length": len(c.data), "missing": c.missing,
                    "text": _ascii(c.data), "hex": c.data.hex()} for c in result.chunks],
    }


def follow(path: str, stream: int, fmt: str = "ascii", as_json: bool = False):
    """What `diagnose follow CAPTURE --stream N [--format ascii|hex|raw] [--json]` prints: text, or a dict for
    JSON. A stream number with no packets gives the header lines and no chunks, as tshark does."""
    result = follow_stream(path, stream)
    return to_json(result) if as_json else render(result, fmt)
