"""`diagnose flows`: the conversation table, as text or as JSON records named like Zeek's conn.log.

Built column-wise from the flow table (a capture can hold hundreds of thousands of conversations): roles are decided
with numpy, and each distinct address is formatted once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from diagnose.addresses import format_address
from diagnose.flows import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
from diagnose.jit import kernel
from diagnose.report.textkernel import digits, fixed6_len, pad, put_bytes, put_fixed6, put_int, string_table
from diagnose.pipeline import open_pass
from diagnose.progress import progress_for

PROTO_NAMES = {PROTO_TCP: "tcp", PROTO_UDP: "udp", PROTO_ICMP: "icmp", PROTO_ICMPV6: "icmp"}
EPHEMERAL_START = 32768
BLOCK = 8192  # conversations handled at a time when printing: output memory stays bounded


def client_sides(convs: np.ndarray) -> np.ndarray:
    """Per conversation: 0 if endpoint A is the client/originator, 1 if B is.

    Decided by the handshake when one was seen (SYN sender, or the receiver of a SYN-ACK); otherwise the endpoint
    on a well-known (< 1024) or else non-ephemeral (< 32768) port is the server; failing that the first sender
    is the client.
    """
    a = convs["a_port"].astype(np.int64)
    b = convs["b_port"].astype(np.int64)
    ported = np.isin(convs["proto"], (PROTO_TCP, PROTO_UDP))
    side = np.zeros(len(convs), np.int8)
    for limit in (EPHEMERAL_START, 1024):  # the stronger rule last, so it wins
        differs = ported & ((a < limit) != (b < limit))
        side = np.where(differs, np.where(a < limit, 1, 0), side).astype(np.int8)
    return np.where(convs["client"] >= 0, convs["client"], side).astype(np.int8)


def _addresses(ipv: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> list[str]:
    """Formatted addresses, each distinct one formatted once (IPv4 keys sort as plain integers: fast)."""
    v4 = ipv == 4
    if v4.all():
        uniq, inverse = np.unique(lo, return_inverse=True)
        names = [format_address(4, 0, int(x)) for x in uniq.tolist()]
        return [names[i] for i in inverse.ravel().tolist()]
    keys = np.stack([ipv.astype(np.uint64), hi, lo], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    names = [format_address(int(v), int(h), int(lw)) for v, h, lw in uniq]
    return [names[i] for i in inverse.ravel().tolist()]


def flow_columns(convs: np.ndarray) -> dict[str, list]:
    """Conn.log-style columns (one list per field, one entry per conversation)."""
    c = client_sides(convs).astype(np.int64)
    s = 1 - c
    idx = np.arange(len(convs))
    ipv = convs["ipv"]

    def pick(a_field: str, b_field: str, side: np.ndarray) -> np.ndarray:
        return np.where(side == 0, convs[a_field], convs[b_field])

    def per_dir(field: str, side: np.ndarray) -> list[int]:
        return convs[field][idx, side].tolist()

    proto = convs["proto"].tolist()
    return {
        "stream": [int(v) if v >= 0 else None for v in convs["stream"].tolist()],
        "proto": [PROTO_NAMES.get(p, str(p)) for p in proto],
        "ts": (convs["first_ts"] / 1e9).tolist(),
        "orig_h": _addresses(ipv, pick("a_hi", "b_hi", c), pick("a_lo", "b_lo", c)),
        "orig_p": pick("a_port", "b_port", c).tolist(),
        "resp_h": _addresses(ipv, pick("a_hi", "b_hi", s), pick("a_lo", "b_lo", s)),
        "resp_p": pick("a_port", "b_port", s).tolist(),
        "duration": ((convs["last_ts"] - convs["first_ts"]) / 1e9).tolist(),
        "orig_pkts": per_dir("pkts", c),
        "resp_pkts": per_dir("pkts", s),
        "orig_bytes": per_dir("payload", c),
        "resp_bytes": per_dir("payload", s),
        "orig_wire_bytes": per_dir("bytes", c),
        "resp_wire_bytes": per_dir("bytes", s),
        "first_frame": convs["first_frame"].tolist(),
        "last_frame": convs["last_frame"].tolist(),
        "reused_ports": convs["reused"].astype(bool).tolist(),
    }


def flow_records(convs: np.ndarray) -> list[dict]:
    cols = flow_columns(convs)
    names = list(cols)
    return [dict(zip(names, values)) for values in zip(*cols.values())]


@dataclass
class FlowTableView:
    """What the conversation table shows: the flow rows and Zeek's conn_state/history of each, as indices into a
    list of distinct strings (the Zeek state tables themselves are released before printing)."""

    convs: np.ndarray
    texts: list[str]
    state_idx: np.ndarray
    hist_idx: np.ndarray
    warnings: list[str]


def collect_flows(path: str) -> FlowTableView:
    from diagnose.conn.zeek import ConnStates

    run = open_pass(path)
    conn = ConnStates()
    with run.capture, progress_for(run.capture) as tick:
        for chunk in run.chunks():
            conn.update(chunk.buf, chunk.table, run.flows.count)
            tick()
    texts, state_idx, hist_idx = conn.state_text_columns(run.flows.count)
    # index 0 is "-" (no state, or no history), as the table prints it
    return FlowTableView(run.flows.conversations, ["-", *texts], (state_idx + 1).astype(np.int32),
                         (hist_idx + 1).astype(np.int32), run.capture.info.warnings)


def write_json(path: str, out) -> list[str]:
    """Every flow's record (Zeek's conn.log names next to ours: diagnose.conn.record) as a JSON array, written from
    the record columns by a kernel a block at a time (diagnose.report.jsonkernel); returns the capture's warnings."""
    from diagnose.conn.record import analyse_flows
    from diagnose.report import jsonkernel

    analysis = analyse_flows(path)
    jsonkernel.write_json_records(out, analysis.iter_columns(jsonkernel.BLOCK))
    return analysis.warnings


HEADER = ("stream", "proto", "client", "", "server", "state", "history", "pkts>", "bytes>", "pkts<", "bytes<", "start",
          "duration")
LEFT = (False, True, True, True, True, True, True, False, False, False, False, False, False)


@kernel
def _ipv4_len(addr):
    return digits(addr >> 24) + digits((addr >> 16) & 255) + digits((addr >> 8) & 255) + digits(addr & 255) + 3


@kernel
def _put_ipv4(out, pos, addr):
    for shift in (24, 16, 8, 0):
        pos = put_int(out, pos, (addr >> shift) & 255)
        if shift:
            out[pos] = 46  # '.'
            pos += 1
    return pos


@kernel
def _endpoint_len(v4, addr_len, ipv6, port, ported):
    n = _ipv4_len(v4) if not ipv6 else addr_len + (2 if ported else 0)
    return n + 1 + digits(port) if ported else n


@kernel
def _put_endpoint(out, pos, v4, addr_table, addr_idx, addr_len, ipv6, port, ported):
    if not ipv6:
        pos = _put_ipv4(out, pos, v4)
    else:
        if ported:
            out[pos] = 91  # '['
            pos += 1
        pos = put_bytes(out, pos, addr_table, addr_idx, addr_len)
    if ported:
        if ipv6:
            out[pos] = 93  # ']'
            pos += 1
        out[pos] = 58  # ':'
        pos = put_int(out, pos + 1, port)
    return pos


@kernel
def _render(out, widths, stream, proto_idx, proto_table, proto_len, ported, ipv6, addr_table, addr_len,
            text_table, text_len, state_idx, hist_idx,
            c_v4, c_addr, c_port, s_v4, s_addr, s_port, c_pkts, c_bytes, s_pkts, s_bytes, start_us, dur_us):
    """Write one line per conversation into out; returns the bytes written."""
    pos = 0
    for i in range(stream.shape[0]):
        # stream
        w = digits(stream[i]) if stream[i] >= 0 else 1
        pos = pad(out, pos, widths[0] - w)
        if stream[i] >= 0:
            pos = put_int(out, pos, stream[i])
        else:
            out[pos] = 45
            pos += 1
        pos = pad(out, pos, 2)
        # proto
        pos = put_bytes(out, pos, proto_table, proto_idx[i], proto_len[proto_idx[i]])
        pos = pad(out, pos, widths[1] - proto_len[proto_idx[i]] + 2)
        # client -> server
        n = _endpoint_len(c_v4[i], addr_len[c_addr[i]], ipv6[i], c_port[i], ported[i])
        pos = _put_endpoint(out, pos, c_v4[i], addr_table, c_addr[i], addr_len[c_addr[i]], ipv6[i], c_port[i],
                            ported[i])
        pos = pad(out, pos, widths[2] - n + 2)
        out[pos] = 45
        out[pos + 1] = 62  # '->'
        pos = pad(out, pos + 2, 2)
        n = _endpoint_len(s_v4[i], addr_len[s_addr[i]], ipv6[i], s_port[i], ported[i])
        pos = _put_endpoint(out, pos, s_v4[i], addr_table, s_addr[i], addr_len[s_addr[i]], ipv6[i], s_port[i],
                            ported[i])
        pos = pad(out, pos, widths[4] - n + 2)
        # Zeek's conn_state and history
        for k in range(2):
            t = state_idx[i] if k == 0 else hist_idx[i]
            pos = put_bytes(out, pos, text_table, t, text_len[t])
            pos = pad(out, pos, widths[5 + k] - text_len[t] + (2 if k == 0 else 0))
        # counters and times, right-aligned
        for k in range(4):
            v = c_pkts[i] if k == 0 else c_bytes[i] if k == 1 else s_pkts[i] if k == 2 else s_bytes[i]
            pos = pad(out, pos, 2 + widths[7 + k] - digits(v))
            pos = put_int(out, pos, v)
        pos = pad(out, pos, 2 + widths[11] - fixed6_len(start_us[i]))
        pos = put_fixed6(out, pos, start_us[i])
        pos = pad(out, pos, 2 + widths[12] - fixed6_len(dur_us[i]))
        pos = put_fixed6(out, pos, dur_us[i])
        out[pos] = 10
        pos += 1
    return pos


def _block_columns(convs: np.ndarray, a_idx: np.ndarray, b_idx: np.ndarray, start: int) -> dict[str, np.ndarray]:
    """The kernel's input columns for a block of conversations (client/server sides resolved)."""
    c = client_sides(convs).astype(np.int64)
    s = 1 - c
    idx = np.arange(len(convs))
    return dict(
        stream=convs["stream"].astype(np.int64),
        c_v4=np.where(c == 0, convs["a_lo"], convs["b_lo"]).astype(np.int64),
        c_addr=np.where(c == 0, a_idx, b_idx),
        c_port=np.where(c == 0, convs["a_port"], convs["b_port"]).astype(np.int64),
        s_v4=np.where(s == 0, convs["a_lo"], convs["b_lo"]).astype(np.int64),
        s_addr=np.where(s == 0, a_idx, b_idx),
        s_port=np.where(s == 0, convs["a_port"], convs["b_port"]).astype(np.int64),
        c_pkts=convs["pkts"][idx, c], c_bytes=convs["bytes"][idx, c],
        s_pkts=convs["pkts"][idx, s], s_bytes=convs["bytes"][idx, s],
        start_us=(convs["first_ts"] - start + 500) // 1000,
        dur_us=(convs["last_ts"] - convs["first_ts"] + 500) // 1000,
    )


KERNEL_COLUMNS = ("c_v4", "c_addr", "c_port", "s_v4", "s_addr", "s_port", "c_pkts", "c_bytes", "s_pkts", "s_bytes",
                  "start_us", "dur_us")


def write_table(view: FlowTableView, out) -> None:
    """The conversation table as aligned text, rendered by a kernel block by block (large captures have many
    flows: nothing per flow is held for the whole table)."""
    convs = view.convs
    if not len(convs):
        out.write("no conversations\n")
        return
    # IPv4 addresses are rendered by the kernel; other addresses (IPv6) come from a table of distinct strings
    ipv6 = convs["ipv"] != 4
    a_idx = np.zeros(len(convs), np.int32)
    b_idx = np.zeros(len(convs), np.int32)
    names: list[str] = []
    if ipv6.any():
        sel = np.nonzero(ipv6)[0]
        keys = np.concatenate([np.stack([convs["ipv"][sel].astype(np.uint64), convs[h][sel], convs[lw][sel]], axis=1)
                               for h, lw in (("a_hi", "a_lo"), ("b_hi", "b_lo"))])
        uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        names = [format_address(int(v), int(h), int(lw)) for v, h, lw in uniq]
        a_idx[sel], b_idx[sel] = inverse[: len(sel)], inverse[len(sel):]
    addr_table, addr_len = string_table(names)
    proto_names = sorted(set(PROTO_NAMES.values()) | {str(p) for p in np.unique(convs["proto"]).tolist()})
    proto_table, proto_len = string_table(proto_names)
    proto_code = {p: proto_names.index(PROTO_NAMES.get(p, str(p))) for p in np.unique(convs["proto"]).tolist()}
    start = int(convs["first_ts"].min())
    endpoint_w = max(15, int(addr_len.max()) + (2 if ipv6.any() else 0)) + 6
    most_pkts = len(str(int(convs["pkts"].max())))
    most_bytes = len(str(int(convs["bytes"].max())))
    widths = np.array([
        max(6, len(str(int(convs["stream"].max())))), max(5, int(proto_len.max())), endpoint_w, 2, endpoint_w,
        6, max(7, max(map(len, view.texts))), max(5, most_pkts), max(6, most_bytes), max(5, most_pkts), max(6, most_bytes),
        max(5, len(f"{(int(convs['first_ts'].max()) - start) / 1e9:.6f}")),
        max(8, len(f"{int((convs['last_ts'] - convs['first_ts']).max()) / 1e9:.6f}")),
    ], np.int64)
    text_table, text_len = string_table(view.texts)
    fmt = "  ".join(f"{{:{'<' if left else '>'}{w}}}" for left, w in zip(LEFT, widths.tolist()))
    out.write(fmt.format(*HEADER).rstrip() + "\n")
    line_max = int(widths.sum()) + 2 * len(widths) + 8
    for lo in range(0, len(convs), BLOCK):
        hi = min(lo + BLOCK, len(convs))
        block = convs[lo:hi]
        cols = _block_columns(block, a_idx[lo:hi], b_idx[lo:hi], start)
        proto_idx = np.array([proto_code[p] for p in block["proto"].tolist()], np.int64)
        ported = np.isin(block["proto"], (PROTO_TCP, PROTO_UDP))
        buf = np.empty(line_max * (hi - lo), np.uint8)
        n = _render(buf, widths, cols["stream"], proto_idx, proto_table, proto_len, ported, ipv6[lo:hi], addr_table,
                    addr_len, text_table, text_len, view.state_idx[lo:hi].astype(np.int64),
                    view.hist_idx[lo:hi].astype(np.int64), *(cols[k] for k in KERNEL_COLUMNS))
        out.write(buf[:n].tobytes().decode())


def _endpoint(host: str, port: int, proto: str) -> str:
    if proto not in ("tcp", "udp"):
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
