"""Follow TCP stream: one connection's bytes in both directions, in the order they became readable, like
Wireshark's Follow TCP Stream and `tshark -q -z follow,tcp,ascii|hex|raw,N`.

Node 0 is the sender of the stream's first packet. Each direction is reassembled (diagnose.reassembly): a
retransmission is shown once, out-of-order data when the hole before it is filled, and data the peer acknowledged
but the capture never had as "[N bytes missing in capture file]" (Wireshark's words and their NUL, shown in
place of the data).
Each packet's new bytes are one chunk; chunks of node 1 are indented by a tab.

Follow TLS Stream (`tshark -z follow,tls,...`): with a key log ($SSLKEYLOGFILE, `--keylog FILE`, or decryption
secrets inside a pcapng) the stream's TLS session is decrypted by the application layer (protocols/app.py with
tls_decrypt.KeyLogDecryption, the same parser and decryptor every other command uses, fed only this stream's
packets) and each application-data record's plaintext is one chunk, in the order the records completed, credited to
the packet that completed it. Node 0 is, as in Wireshark, the sender of the first packet that held any decrypted
record (a TLS 1.3 server's encrypted handshake, a TLS 1.2 client's Finished). The layer "auto" shows the plaintext
when the key log decrypted the stream and the TCP bytes otherwise, with a note saying why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from diagnose.packet import ST_ICMP_ERROR, ST_REASSEMBLED, ST_TRUNCATED, TH_ACK, TH_SYN
from diagnose.reassembly import Direction, StreamConsumer

RULE = "=" * 67
FORMATS = ("ascii", "hex", "raw")
LAYERS = ("auto", "tcp", "tls")


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
    layer: str = "tcp"  # "tcp": the TCP bytes; "tls": decrypted TLS application data

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
    return _follow_pass(path, stream)[0]


@dataclass
class TlsView:
    """What the TLS layer made of one TCP stream: its decrypted application data and how decryption went."""

    result: FollowResult  # layer "tls"
    is_tls: bool = False  # the application layer recognised TLS in the stream
    version: int | None = None  # negotiated (None without a ServerHello)
    decrypted_records: int = 0  # records of any type the key log opened
    outcome: str | None = None  # tls_decrypt.Outcome.describe() of the session, when it got that far
    keylog_sources: int = 0
    keylog_randoms: int = 0
    keylog_warnings: list[str] = field(default_factory=list)  # bad lines etc. (line numbers, never contents)

    @property
    def decrypted(self) -> bool:
        return self.decrypted_records > 0


class _TlsFollower:
    """Runs the application layer with the key log over one stream's packets and collects decrypted records."""

    def __init__(self, stream: int, keylogs: Sequence[str], use_environment: bool):
        from diagnose.keylog import KeyLog
        from diagnose.protocols.app import AppLayer
        from diagnose.protocols.tls_decrypt import KeyLogDecryption

        self.keylog = KeyLog.load(list(keylogs), use_environment=use_environment)
        self.decryption = KeyLogDecryption(self.keylog)
        self.app = AppLayer(decryptor_factory=self.decryption)
        self.view = TlsView(FollowResult(stream, layer="tls"))
        self.secrets_seen = 0
        self.conv: int | None = None
        self.endpoints: list[str | None] = [None, None]  # by flow direction
        self.node0_dir: int | None = None
        self.records: list[tuple[int, int, bytes]] = []  # (flow direction, frame, plaintext)

    def secrets(self, info) -> None:
        if len(info.secrets) > self.secrets_seen:  # decryption-secrets blocks come before their packets
            self.keylog.add_secrets(info.secrets[self.secrets_seen:])
            self.secrets_seen = len(info.secrets)

    def chunk(self, buf, rows: np.ndarray, conversations) -> None:
        """`rows`: this chunk's table rows of the stream (a copy: only they reach the application layer)."""
        for d in (0, 1):
            if self.endpoints[d] is None:
                mine = np.nonzero(rows["dir"] == d)[0]
                if len(mine):
                    r = rows[int(mine[0])]
                    self.endpoints[d] = _endpoint(int(r["ipv"]), int(r["src_hi"]), int(r["src_lo"]), int(r["sport"]))
        if self.conv is None:
            self.conv = int(rows["conv"][0])
        out = self.app.update(buf, rows, conversations)
        frames = rows["frame"]
        for row, rec in out.rows("tls"):
            if not rec.decrypted:
                continue
            if self.node0_dir is None:
                self.node0_dir = rec.direction
            self.view.decrypted_records += 1
            if rec.plaintext:  # an empty record shows nothing
                self.records.append((rec.direction, int(frames[row]), rec.plaintext))

    def finish(self, tcp: FollowResult) -> TlsView:
        """The view, its nodes and chunks numbered like tshark's; without decrypted records the TCP nodes."""
        from diagnose.protocols import classify

        view = self.view
        result = view.result
        result.packets = tcp.packets
        node0 = self.node0_dir if self.node0_dir is not None else 0
        if self.node0_dir is not None and None not in self.endpoints:
            result.nodes = [self.endpoints[node0], self.endpoints[1 - node0]]
        else:
            result.nodes = list(tcp.nodes)
        result.chunks = [Chunk(0 if d == node0 else 1, data, frame) for d, frame, data in self.records]
        flow = self.app.flows.get(self.conv) if self.conv is not None else None
        view.is_tls = flow is not None and flow.protocol == classify.TLS
        for session, keys, decryptor in self.decryption.sessions:
            view.version = session.version
            view.outcome = self.decryption.outcome_of(session, keys, decryptor).describe()
        view.keylog_sources = len(self.keylog.sources)
        view.keylog_randoms = len(self.keylog)
        view.keylog_warnings = self.keylog.warnings()
        return view


def _follow_pass(path: str, stream: int, *, tls: bool = False, keylogs: Sequence[str] = (),
                 use_environment: bool = True) -> tuple[FollowResult, TlsView | None]:
    """One read of the capture: the TCP bytes of `stream` and, with tls=True, its decrypted TLS records."""
    from diagnose.pipeline import open_pass

    result = FollowResult(stream)
    current_frame = [None]
    directions: list[Direction | None] = [None, None]
    recorders = [_Recorder(result, 0, current_frame), _Recorder(result, 1, current_frame)]
    follower = _TlsFollower(stream, keylogs, use_environment) if tls else None
    run = open_pass(path)
    with run.capture:
        for chunk in run.chunks():
            table = chunk.table
            in_stream = (table["stream"] == stream) & (table["ip_proto"] == 6)
            if follower is not None:
                follower.secrets(run.capture.info)
                stream_rows = np.nonzero(in_stream)[0]
                if len(stream_rows):
                    follower.chunk(chunk.buf, table[stream_rows], run.flows.conversations)
            # Wireshark follows packets whose TCP header it could read: not ICMP errors quoting the flow, not
            # packets whose header the snapshot length cut (they do not even decide which side is node 0)
            rows = np.nonzero(in_stream & (table["l4_off"] >= 0)
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
        if follower is not None:
            follower.secrets(run.capture.info)
    # Data still held behind a hole when the capture ends is not shown (tshark does not show it either).
    return result, (follower.finish(result) if follower is not None else None)


def follow_tls_stream(path: str, stream: int, keylogs: Sequence[str] = (), *,
                      use_environment: bool = True) -> tuple[FollowResult, TlsView]:
    """The TCP bytes of `stream` and its TLS view, decrypted with the key logs (files, $SSLKEYLOGFILE unless
    use_environment=False, the capture's decryption-secrets blocks)."""
    tcp, view = _follow_pass(path, stream, tls=True, keylogs=keylogs, use_environment=use_environment)
    return tcp, view


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
    """The text tshark prints for `-q -z follow,tcp|tls,<fmt>,<stream>` (tls: with the peer as Node 1, where tshark
    4.0 prints ":0")."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown follow format {fmt!r} (ascii, hex or raw)")
    out = ["", RULE, f"Follow: {result.layer},{fmt}", f"Filter: tcp.stream eq {result.stream}"]
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
        "layer": result.layer,
        "nodes": result.nodes,
        "packets": result.packets,
        "bytes": [result.bytes_of(0), result.bytes_of(1)],
        "chunks": [{"node": c.node, "frame": c.frame, "length": len(c.data), "missing": c.missing,
                    "text": _ascii(c.data), "hex": c.data.hex()} for c in result.chunks],
    }


def follow(path: str, stream: int, fmt: str = "ascii", as_json: bool = False, *, layer: str = "auto",
           keylogs: Sequence[str] = (), use_environment: bool = True):
    """What `diagnose follow CAPTURE --stream N [--format ascii|hex|raw] [--json] [--keylog FILE] [--tls|--tcp]`
    prints: text, or a dict for JSON (the notes for stderr are left out; see `follow_with_notes`). A stream number
    with no packets gives the header lines and no chunks, as tshark does."""
    return follow_with_notes(path, stream, fmt, as_json, layer=layer, keylogs=keylogs,
                             use_environment=use_environment)[0]


def follow_with_notes(path: str, stream: int, fmt: str = "ascii", as_json: bool = False, *, layer: str = "auto",
                      keylogs: Sequence[str] = (), use_environment: bool = True) -> tuple[object, list[str]]:
    """(text or JSON dict, notes). layer "tcp": the TCP bytes; "tls": the decrypted application data (header only
    when nothing decrypts, like tshark); "auto": the plaintext when the key log decrypts the stream, else the TCP
    bytes. Notes say why a TLS stream is not shown decrypted, and relay key log problems (never a secret)."""
    if layer not in LAYERS:
        raise ValueError(f"unknown follow layer {layer!r} (auto, tcp or tls)")
    if layer == "tcp":
        result, notes = follow_stream(path, stream), []
    else:
        tcp, view = follow_tls_stream(path, stream, keylogs, use_environment=use_environment)
        shown = view.result if layer == "tls" or view.decrypted else tcp
        result, notes = shown, tls_notes(view, shown)
    return (to_json(result) if as_json else render(result, fmt)), notes


def tls_notes(view: TlsView, shown: FollowResult) -> list[str]:
    """Why the stream is shown as it is: key log problems, a TLS stream left encrypted, a TLS view that is empty."""
    stream = view.result.stream
    notes = list(view.keylog_warnings)
    what = "the encrypted TCP bytes are shown" if shown.layer == "tcp" else "there is no plaintext to show"
    if view.is_tls and not view.decrypted:
        if view.keylog_sources == 0:
            notes.append(f"tcp.stream {stream} is TLS and no key log was given: {what} (give --keylog FILE, set "
                         "SSLKEYLOGFILE, or use a pcapng with decryption secrets)")
        elif view.outcome is None:
            notes.append(f"tcp.stream {stream} is TLS but its ServerHello was not seen, so no key applies: {what}")
        else:
            notes.append(f"tcp.stream {stream} is TLS and the key log ({view.keylog_randoms} client randoms) did not "
                         f"decrypt it ({view.outcome}): {what}")
    elif shown.layer == "tls" and not view.is_tls and shown.packets:
        notes.append(f"tcp.stream {stream}: no TLS seen in this stream, there is no plaintext to show")
    elif shown.layer == "tls" and view.decrypted and not shown.chunks:
        notes.append(f"tcp.stream {stream}: the TLS session was decrypted but carried no application data")
    return notes
