"""What the HTML charts draw, gathered by a second, targeted read of the capture once the findings are known.

The diagnosis pass keeps no packets; the HTML report needs a few: the packets of each flagged flow (for its
connection ladder) and the retransmissions over time. Only the flows named by findings are kept, and only a bounded
number of packets per flow (the first ones, the evidence, the last ones), so memory stays small on any capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diagnose.findings import Report

MAX_FLOWS = 8  # flows with a ladder
FIRST, LAST = 24, 8  # packets kept per flow besides the evidence
BINS = 60  # time bins of the retransmission chart


@dataclass
class LadderPacket:
    frame: int
    t: float  # seconds since the flow's first packet
    from_client: bool
    label: str  # "SYN", "ACK 1:1449 (1448)", "RST", ...
    notes: list[str] = field(default_factory=list)  # tcp.analysis labels: retransmission, zero window, ...
    evidence: bool = False
    index: int = 0  # position among the flow's packets (gaps in it are packets not drawn)


@dataclass
class FlowChart:
    conv: int
    client: str
    server: str
    start: float  # epoch seconds
    packets: list[LadderPacket] = field(default_factory=list)
    skipped: int = 0  # packets of the flow not drawn (the gaps in LadderPacket.index)
    bin_width: float = 0.0
    data_bins: list[int] = field(default_factory=list)  # data segments per time bin
    retrans_bins: list[int] = field(default_factory=list)  # retransmissions per time bin


@dataclass
class ChartData:
    flows: dict[int, FlowChart] = field(default_factory=dict)


_FLAG_NAMES = ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"))
_NOTES = (("A_RETRANSMISSION", "retransmission"), ("A_FAST_RETRANSMISSION", "fast retransmission"),
          ("A_SPURIOUS_RETRANSMISSION", "spurious retransmission"), ("A_LOST_SEGMENT", "previous segment lost"),
          ("A_DUPLICATE_ACK", "dup ACK"), ("A_ZERO_WINDOW", "zero window"), ("A_WINDOW_FULL", "window full"),
          ("A_WINDOW_UPDATE", "window update"), ("A_KEEP_ALIVE", "keep-alive"),
          ("A_ZERO_WINDOW_PROBE", "zero-window probe"), ("A_OUT_OF_ORDER", "out of order"))


def collect_chart_data(path: str, report: Report, records: list[dict] | None = None) -> ChartData:
    from diagnose.addresses import format_address
    from diagnose.pipeline import open_pass
    from diagnose.tcp import analysis as A
    from diagnose.tcp.analysis import TcpAnalyzer

    wanted: dict[int, set[int]] = {}
    for top in (*report.capture_quality, *report.findings):
        for f in top.walk():
            for ref in f.flows:
                if len(wanted) >= MAX_FLOWS and ref.conv not in wanted:
                    continue
                wanted.setdefault(ref.conv, set()).update(f.evidence)
    data = ChartData()
    if not wanted:
        return data
    refs = {ref.conv: ref for top in (*report.capture_quality, *report.findings) for f in top.walk() for ref in f.flows}
    for conv, ref in refs.items():
        if conv in wanted:
            data.flows[conv] = FlowChart(conv, ref.client, ref.server, 0.0)
    convs = np.array(sorted(wanted), np.int64)
    retrans_bits = A.A_RETRANSMISSION | A.A_FAST_RETRANSMISSION | A.A_SPURIOUS_RETRANSMISSION
    kept: dict[int, list] = {c: [] for c in wanted}
    tail: dict[int, list] = {c: [] for c in wanted}
    series: dict[int, list[tuple[float, bool, bool]]] = {c: [] for c in wanted}
    seen: dict[int, int] = {c: 0 for c in wanted}
    run = open_pass(path)
    analyzer = TcpAnalyzer(run.flows)
    with run.capture:
        for chunk in run.chunks():
            table = chunk.table
            rows = analyzer.update(table, chunk.buf)
            hit = np.isin(table["conv"], convs)
            for i in np.flatnonzero(hit).tolist():
                r = table[i]
                conv = int(r["conv"])
                chart = data.flows[conv]
                src = format_address(int(r["ipv"]), int(r["src_hi"]), int(r["src_lo"]))
                sport = int(r["sport"])
                endpoint = f"[{src}]:{sport}" if ":" in src else f"{src}:{sport}"
                ts = int(r["ts"]) / 1e9
                if not chart.start:
                    chart.start = ts
                flags = int(rows[i]["flags"])
                is_data = int(r["payload_len"]) > 0 and r["ip_proto"] == 6
                series[conv].append((ts, is_data, bool(flags & retrans_bits)))
                item = (int(r["frame"]), ts, endpoint == chart.client or (endpoint != chart.server and
                                                                          int(r["dir"]) == 0), r, rows[i])
                frame = int(r["frame"])
                seen[conv] += 1
                if len(kept[conv]) < FIRST or frame in wanted[conv]:
                    kept[conv].append(_packet(item, chart.start, frame in wanted[conv], A, seen[conv]))
                else:
                    tail[conv].append(_packet(item, chart.start, False, A, seen[conv]))
                    if len(tail[conv]) > LAST:
                        tail[conv].pop(0)
                        chart.skipped += 1
    for conv, chart in data.flows.items():
        chart.packets = kept[conv] + tail[conv]
        _bins(chart, series[conv])
    return data


def _packet(item, start: float, evidence: bool, A, index: int) -> LadderPacket:
    frame, ts, from_client, r, a = item
    flags = int(r["tcp_flags"])
    if r["ip_proto"] == 6:
        names = [name for bit, name in _FLAG_NAMES if flags & bit]
        length = int(a["len"]) if a["len"] >= 0 else int(r["payload_len"])
        label = ",".join(names) or "TCP"
        if length:
            label += f" len {length}"
        if a["present"] & A.P_HEADER:
            label += f" win {int(a['window'])}"
    elif r["ip_proto"] == 17:
        label = f"UDP len {int(r['payload_len'])}"
    elif r["icmp_type"] >= 0:
        label = f"ICMP type {int(r['icmp_type'])} code {int(r['icmp_code'])}"
    else:
        label = f"IP proto {int(r['ip_proto'])}"
    bits = int(a["flags"])
    notes = [name for attr, name in _NOTES if bits & getattr(A, attr)]
    return LadderPacket(frame, ts - start, bool(from_client), label, notes, evidence, index)


def _bins(chart: FlowChart, points: list[tuple[float, bool, bool]]) -> None:
    if not points:
        return
    t0 = points[0][0]
    span = max(points[-1][0] - t0, 1e-6)
    chart.bin_width = span / BINS
    data = [0] * BINS
    retrans = [0] * BINS
    for ts, is_data, is_retrans in points:
        k = min(int((ts - t0) / chart.bin_width), BINS - 1)
        if is_data:
            data[k] += 1
        if is_retrans:
            retrans[k] += 1
    chart.data_bins, chart.retrans_bins = data, retrans
