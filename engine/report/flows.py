"""`diagnose flows`: the conversation table, as text or as JSON records named like Zeek's conn.log."""

from __future__ import annotations

import numpy as np

from diagnose.addresses import format_address
from diagnose.flows import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from diagnose.pipeline import open_pass
from diagnose.progress import progress_for

PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}
EPHEMERAL_START = 32768


def client_side(conv: np.void) -> int:
    """0 if endpoint A is the client/originator, 1 if B is.

    Decided by the handshake when one was seen (SYN sender, or the receiver of a SYN-ACK); otherwise the endpoint
    on a well-known or non-ephemeral port is taken as the server, and failing that the first sender is the client.
    """
    if conv["client"] >= 0:
        return int(conv["client"])
    if conv["proto"] in (PROTO_TCP, PROTO_UDP):
        a, b = int(conv["a_port"]), int(conv["b_port"])
        if (a < 1024) != (b < 1024):
            return 1 if a < 1024 else 0
        if (a < EPHEMERAL_START) != (b < EPHEMERAL_START):
            return 1 if a < EPHEMERAL_START else 0
    return 0


def flow_record(conv: np.void) -> dict:
    c = client_side(conv)
    s = 1 - c
    ends = [("a_hi", "a_lo", "a_port"), ("b_hi", "b_lo", "b_port")]
    ipv = int(conv["ipv"])
    proto = int(conv["proto"])
    return {
        "stream": int(conv["stream"]) if conv["stream"] >= 0 else None,
        "proto": PROTO_NAMES.get(proto, str(proto)),
        "ts": conv["first_ts"] / 1e9,
        "orig_h": format_address(ipv, conv[ends[c][0]], conv[ends[c][1]]),
        "orig_p": int(conv[ends[c][2]]),
        "resp_h": format_address(ipv, conv[ends[s][0]], conv[ends[s][1]]),
        "resp_p": int(conv[ends[s][2]]),
        "duration": (conv["last_ts"] - conv["first_ts"]) / 1e9,
        "orig_pkts": int(conv["pkts"][c]),
        "resp_pkts": int(conv["pkts"][s]),
        "orig_bytes": int(conv["payload"][c]),
        "resp_bytes": int(conv["payload"][s]),
        "orig_wire_bytes": int(conv["bytes"][c]),
        "resp_wire_bytes": int(conv["bytes"][s]),
        "first_frame": int(conv["first_frame"]),
        "last_frame": int(conv["last_frame"]),
        "reused_ports": bool(conv["reused"]),
    }


def collect_flows(path: str) -> tuple[list[dict], list[str]]:
    run = open_pass(path)
    with run.capture, progress_for(run.capture) as tick:
        for _ in run.chunks():
            tick()
    return [flow_record(c) for c in run.flows.conversations], run.capture.info.warnings


def format_flows(records: list[dict]) -> str:
    if not records:
        return "no conversations\n"
    start = min(r["ts"] for r in records)
    rows = [("stream", "proto", "client", "", "server", "pkts>", "bytes>", "pkts<", "bytes<", "start", "duration")]
    for r in records:
        rows.append((
            "-" if r["stream"] is None else str(r["stream"]), r["proto"],
            _endpoint(r["orig_h"], r["orig_p"], r["proto"]), "->", _endpoint(r["resp_h"], r["resp_p"], r["proto"]),
            str(r["orig_pkts"]), str(r["orig_wire_bytes"]), str(r["resp_pkts"]), str(r["resp_wire_bytes"]),
            f"{r['ts'] - start:.6f}", f"{r['duration']:.6f}",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    left = {1, 2, 4}
    out = []
    for row in rows:
        cells = [cell.ljust(w) if i in left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out) + "\n"


def _endpoint(host: str, port: int, proto: str) -> str:
    if proto not in ("tcp", "udp"):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
