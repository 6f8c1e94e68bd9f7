"""Per-packet TCP analysis against tshark 4.0 (default preferences), for every lab and corpus capture.

For each capture with a stored tshark fixture: the frame set of every tcp.analysis flag equals tshark's `-Y` answer,
and per packet tcp.stream, tcp.seq, tcp.ack, tcp.nxtseq, tcp.len, tcp.window_size(_scalefactor), tcp.time_delta,
tcp.time_relative, tcp.completeness, acks_frame, ack_rtt, initial_rtt, bytes_in_flight and the duplicate-ACK
number/frame equal tshark's printed values. The differences that remain are listed one by one below, with their
reason, and in docs/tcp-analysis-differences.md; anything else fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from oracles.fixtures import capture_files, data_path, load_tshark, packet_columns, tshark_fixture_path
from diagnose.errors import CaptureError
from diagnose.packet import PACKET_DTYPE
from diagnose.pipeline import open_pass
from diagnose.tcp.analysis import (
    A_FAST_RETRANSMISSION, A_RETRANSMISSION, A_SPURIOUS_RETRANSMISSION, ANALYSIS_DTYPE, FLAG_FILTERS, P_ACK_RTT,
    P_ACKS_FRAME, P_BYTES_IN_FLIGHT, P_DUPACK, P_HEADER, P_INITIAL_RTT, P_LEN, P_NXTSEQ, P_SCALE, P_SEQ, P_TCP, P_TIMES,
    TcpAnalyzer, matches)

COMPARED_FIELDS = [
    "tcp.stream", "tcp.seq", "tcp.ack", "tcp.nxtseq", "tcp.len", "tcp.window_size", "tcp.window_size_scalefactor",
    "tcp.time_delta", "tcp.time_relative", "tcp.completeness", "tcp.analysis.acks_frame", "tcp.analysis.ack_rtt",
    "tcp.analysis.initial_rtt", "tcp.analysis.bytes_in_flight", "tcp.analysis.duplicate_ack_num",
    "tcp.analysis.duplicate_ack_frame",
]


def seconds(ns: int) -> str:
    """A relative time as tshark prints it: seconds with 9 decimals."""
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 10**9}.{ns % 10**9:09d}"


def analyze_capture(path) -> tuple[np.ndarray, np.ndarray]:
    """(packet table, analysis rows) of a whole capture, read like the product reads it."""
    tables, rows = [], []
    try:
        run = open_pass(str(path))
        analyzer = TcpAnalyzer(run.flows)
        with run.capture:
            for chunk in run.chunks():
                rows.append(analyzer.update(chunk.table, chunk.buf))
                tables.append(chunk.table.copy())
    except CaptureError:
        pass  # a damaged file: compare the frames read before the damage (none if unreadable), as tshark does
    if not tables:
        return np.zeros(0, PACKET_DTYPE), np.zeros(0, ANALYSIS_DTYPE)
    return np.concatenate(tables), np.concatenate(rows)


def tshark_strings(table: np.ndarray, rows: np.ndarray) -> dict[str, list[str]]:
    """Our values printed the way `tshark -T fields` prints them ("" = field absent)."""
    out: dict[str, list[str]] = {field: [] for field in COMPARED_FIELDS}
    for packet, row in zip(table, rows):
        present = int(row["present"])

        def put(field, shown, value):
            out[field].append(str(value) if shown else "")

        tcp = present & P_TCP
        header = present & P_HEADER
        put("tcp.stream", tcp, packet["stream"])
        put("tcp.seq", present & P_SEQ, row["seq"])
        put("tcp.ack", header, row["ack"])
        put("tcp.nxtseq", present & P_NXTSEQ, row["nxtseq"])
        put("tcp.len", present & P_LEN, row["len"])
        put("tcp.window_size", header, row["window"])
        shift = int(row["win_scale"])
        put("tcp.window_size_scalefactor", present & P_SCALE, shift if shift < 0 else 1 << shift)
        put("tcp.time_delta", present & P_TIMES, seconds(int(row["time_delta"])))
        put("tcp.time_relative", present & P_TIMES, seconds(int(row["time_relative"])))
        put("tcp.completeness", tcp, row["completeness"])
        put("tcp.analysis.acks_frame", present & P_ACKS_FRAME, row["acks_frame"])
        put("tcp.analysis.ack_rtt", present & P_ACK_RTT, seconds(int(row["ack_rtt"])))
        put("tcp.analysis.initial_rtt", present & P_INITIAL_RTT, seconds(int(row["initial_rtt"])))
        put("tcp.analysis.bytes_in_flight", present & P_BYTES_IN_FLIGHT, row["bytes_in_flight"])
        put("tcp.analysis.duplicate_ack_num", present & P_DUPACK, row["dupack_num"])
        put("tcp.analysis.duplicate_ack_frame", present & P_DUPACK, row["dupack_frame"])
    return out


def compare_with_tshark(path, fixture: dict) -> dict[str, set[int]]:
    """{flag filter or field: frames where we differ from tshark}; empty when everything matches."""
    table, rows = analyze_capture(path)
    differences: dict[str, set[int]] = {}
    frames = table["frame"] if len(table) else np.zeros(0, np.int64)
    for flag in FLAG_FILTERS:
        want = set(fixture["frame_sets"].get(flag, []))
        got = set(frames[matches(rows, flag)].tolist())
        if want != got:
            differences[flag] = want ^ got
    theirs = packet_columns(fixture)
    ours = tshark_strings(table, rows)
    count = len(theirs["frame.number"])
    if count != len(table):
        differences["frame count"] = {min(count, len(table)) + 1}
    for field in COMPARED_FIELDS:
        bad = {k + 1 for k in range(min(count, len(table))) if theirs[field][k] != ours[field][k]}
        if bad:
            differences[field] = bad
    return differences


def _frames(*spans) -> set[int]:
    """Frame numbers from ints and (first, last) inclusive spans."""
    out: set[int] = set()
    for span in spans:
        if isinstance(span, tuple):
            out |= set(range(span[0], span[1] + 1))
        else:
            out.add(span)
    return out


_FABRICPATH_UNDECODED = "Cisco FabricPath (ethertype 0x8903) not decoded: these TCP packets are not seen as TCP"
_FABRICPATH_FCS = ("FabricPath frames end in a 4-byte FCS that tshark removes before the inner IP: the inner IP length "
                   "runs 4 bytes past it, leaving 16 TCP bytes, a 'short segment' (no tcp.len, no analysis, no "
                   "times); we count the FCS as TCP bytes and see a complete 20-byte header")
_GTP = "GTP-U tunnel (UDP) not decoded: the TCP packets inside it are not seen as TCP"
_FTP_EPSV = ("tshark's FTP dissector creates the data connection's conversation from the EPSV reply before its SYN "
             "is seen, and Wireshark counts a SYN in tcp.completeness only when it creates the conversation; "
             "we do not dissect FTP, so our completeness of these streams has the SYN bit (+1)")

# (capture, field or flag) -> (frames that differ, reason). Keep in step with docs/tcp-analysis-differences.md.
# A test fails on any difference not listed here; a listed one may disappear (e.g. when the decoder learns a
# tunnel), which is an improvement, not a failure.
EXPECTED_DIFFERENCES: dict[tuple[str, str], tuple[set[int], str]] = {}
_FP = _frames(34, 36, 38, 40, 42, 44, 46, 48, 50, 52, 54, 56, 58, 60, 62, 64)
for _field in ("tcp.stream", "tcp.seq", "tcp.ack", "tcp.window_size", "tcp.completeness"):
    EXPECTED_DIFFERENCES[("corpus-zeek/cisco-fabric-path.pcap", _field)] = (_FP, _FABRICPATH_UNDECODED)
for _field in ("tcp.analysis.retransmission", "tcp.nxtseq", "tcp.len", "tcp.time_delta", "tcp.time_relative"):
    EXPECTED_DIFFERENCES[("corpus-zeek/cisco-fabric-path.pcap", _field)] = (_FP, _FABRICPATH_FCS)
for _field, _spans in {
    "tcp.stream": [(1, 78)], "tcp.seq": [(1, 78)], "tcp.ack": [(1, 78)], "tcp.nxtseq": [(1, 78)],
    "tcp.len": [(1, 78)], "tcp.window_size": [(1, 78)], "tcp.window_size_scalefactor": [(3, 78)],
    "tcp.time_delta": [(1, 78)], "tcp.time_relative": [(1, 78)], "tcp.completeness": [(1, 78)],
    "tcp.analysis.acks_frame": [(1, 78)], "tcp.analysis.ack_rtt": [(1, 78)], "tcp.analysis.initial_rtt": [(1, 78)],
    "tcp.analysis.bytes_in_flight": [(1, 78)],
}.items():
    EXPECTED_DIFFERENCES[("corpus-zeek/gtp2_different_udp_port.pcap", _field)] = (_frames(*_spans), _GTP)
EXPECTED_DIFFERENCES[("corpus-zeek/ipv6.pcap", "tcp.completeness")] = (
    _frames(31, 32, 36, 37, 38, 39, 40, 43, 48, 49, 53, 54, 55, 56, 57, 60, 71, 72, 76, 77, 78, 79, 80, 84), _FTP_EPSV)


def _with_fixture():
    found = []
    for group, name in capture_files():
        try:
            tshark_fixture_path(group, name)
        except FileNotFoundError:
            continue
        found.append((group, name))
    return found


CAPTURES = _with_fixture()


@pytest.mark.parametrize("group,name", CAPTURES, ids=[f"{g}/{n}" for g, n in CAPTURES])
def test_analysis_matches_tshark(group, name):
    fixture = load_tshark(group, name)
    differences = compare_with_tshark(data_path(group, name), fixture)
    key = f"{group}/{name}"
    allowed = {field: frames for (capture, field), (frames, _) in EXPECTED_DIFFERENCES.items() if capture == key}
    unexplained = {field: sorted(frames - allowed.get(field, set())) for field, frames in differences.items()}
    assert {field: frames for field, frames in unexplained.items() if frames} == {}


def test_every_capture_is_compared():
    """No lab or corpus capture goes unchecked because its fixture is missing."""
    assert len(CAPTURES) == len(capture_files())


def test_retransmission_filter_includes_fast_and_spurious():
    rows = np.zeros(4, ANALYSIS_DTYPE)
    rows["flags"] = [A_RETRANSMISSION, A_FAST_RETRANSMISSION, A_SPURIOUS_RETRANSMISSION, 0]
    assert matches(rows, "tcp.analysis.retransmission").tolist() == [True, True, True, False]
    assert matches(rows, "tcp.analysis.fast_retransmission").tolist() == [False, True, False, False]


# ---- the fields in the display-filter language -------------------------------------------------------------------

def _filter_frames(group: str, name: str, texts: list[str]) -> dict[str, set[int]]:
    """Frames each display filter selects, with the TCP analysis rows attached to every chunk."""
    from diagnose.filters import compile_display_filter, iter_contexts
    from diagnose.tcp.fields import attach

    filters = {text: compile_display_filter(text) for text in texts}
    selected: dict[str, set[int]] = {text: set() for text in texts}
    run = open_pass(str(data_path(group, name)))
    analyzer = TcpAnalyzer(run.flows)
    with run.capture:
        chunks = list((chunk.buf, chunk.table.copy()) for chunk in run.chunks() if len(chunk.table))
    for (buf, table), ctx in zip(chunks, iter_contexts([type("C", (), {"buf": b, "table": t}) for b, t in chunks])):
        attach(ctx, analyzer.update(table, buf))
        for text, flt in filters.items():
            selected[text] |= set(table["frame"][flt.evaluate(ctx)].tolist())
    return selected


@pytest.mark.parametrize("group,name", [("lab", "retransmissions.pcap"), ("lab", "zero_window.pcap"),
                                        ("corpus", "zeek/reassembly.pcap")])
def test_flag_filters_select_tsharks_frames(group, name):
    fixture = load_tshark(group, name)
    got = _filter_frames(group, name, list(FLAG_FILTERS))
    assert got == {flag: set(fixture["frame_sets"][flag]) for flag in FLAG_FILTERS}


def test_value_filters_select_tsharks_frames():
    fixture = load_tshark("lab", "retransmissions.pcap")
    columns = packet_columns(fixture)

    def frames_where(field, test):
        return {k + 1 for k, cell in enumerate(columns[field]) if cell and test(cell)}

    texts = {
        "tcp.analysis.ack_rtt > 0.001": frames_where("tcp.analysis.ack_rtt", lambda c: float(c) > 0.001),
        "tcp.analysis.bytes_in_flight >= 100000":
            frames_where("tcp.analysis.bytes_in_flight", lambda c: int(c) >= 100000),
        "tcp.window_size > 1000000": frames_where("tcp.window_size", lambda c: int(c) > 1000000),
        "tcp.analysis.duplicate_ack_num == 3": frames_where("tcp.analysis.duplicate_ack_num", lambda c: c == "3"),
        "tcp.seq == 1": frames_where("tcp.seq", lambda c: c == "1"),
        "tcp.completeness == 31": frames_where("tcp.completeness", lambda c: c == "31"),
        "tcp.analysis.initial_rtt": frames_where("tcp.analysis.initial_rtt", lambda c: True),
    }
    got = _filter_frames("lab", "retransmissions.pcap", list(texts))
    for text, want in texts.items():
        assert want, text  # each filter selects something, so the comparison means something
        assert got[text] == want, text


def test_fields_without_analysis_rows_say_so():
    from diagnose.fields import ChunkContext, lookup
    import diagnose.tcp.fields  # noqa: F401  (registers the fields)

    run = open_pass(str(data_path("lab", "retransmissions.pcap")))
    with run.capture:
        chunk = next(iter(run.chunks()))
        ctx = ChunkContext(chunk.buf, chunk.table)
    with pytest.raises(RuntimeError, match="attach"):
        lookup("tcp.analysis.retransmission").extract(ctx)


# ---- chunking and growth do not change the answers ---------------------------------------------------------------

@pytest.mark.parametrize("group,name", [("lab", "retransmissions.pcap"), ("corpus-zeek", "ssh.pcap")])
def test_results_do_not_depend_on_chunk_boundaries_or_initial_sizes(group, name):
    """State carries across chunks: any split of the rows, and arrays that must grow, give the same rows."""
    table, whole = analyze_capture(data_path(group, name))
    assert (whole["flags"] != 0).sum() > 10
    run = open_pass(str(data_path(group, name)))
    with run.capture:
        for _ in run.chunks():
            pass
    rng = np.random.default_rng(7)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, len(table)), size=40, replace=False))
        analyzer = TcpAnalyzer(run.flows, initial_streams=1, initial_segments=2)
        parts = [analyzer.update(piece) for piece in np.split(table, cuts)]
        assert np.array_equal(np.concatenate(parts), whole)
        assert analyzer._pool.capacity > 2  # the segment pool had to grow


def test_stream_state_grows():
    table, whole = analyze_capture(data_path("corpus-zeek", "ssh.pcap"))
    run = open_pass(str(data_path("corpus-zeek", "ssh.pcap")))
    with run.capture:
        for _ in run.chunks():
            pass
    analyzer = TcpAnalyzer(run.flows, initial_streams=1)
    assert np.array_equal(analyzer.update(table), whole)
    assert len(analyzer.stream_state) >= run.flows.tcp_streams > 1


def test_completeness_per_conversation():
    """The final tcp.completeness of each TCP conversation is the value tshark shows on its last packet plus that
    packet's own contribution, i.e. the value of the stream once the capture is read."""
    table, rows = analyze_capture(data_path("lab", "mid_stream_rst.pcap"))
    run = open_pass(str(data_path("lab", "mid_stream_rst.pcap")))
    analyzer = TcpAnalyzer(run.flows)
    with run.capture:
        for chunk in run.chunks():
            analyzer.update(chunk.table, chunk.buf)
    per_conv = analyzer.conversation_completeness(run.flows.conversations)
    tcp = run.flows.conversations["proto"] == 6
    assert tcp.any()
    # mid_stream_rst: handshake, data both ways, then the server's RST
    assert set(per_conv[tcp].tolist()) == {1 | 2 | 4 | 8 | 32}
    assert (per_conv[~tcp] == 0).all()
