"""FlowAnalysis takes what the records read from the pass's state (diagnose.conn.record.RecordTables) and the pass's
tables are released. The records must read exactly what the pass's tables held: checked here against copies of
those tables taken before the hand-over, on captures whose side tables (RSTs, ICMP errors, repeated SYNs) are not
empty, and in blocks that split them."""

from pathlib import Path

import numpy as np

from diagnose.conn.facts import FLOW_DTYPE, TCP_FACTS_DTYPE, FlowFacts
from diagnose.conn.record import _NO_TCP_FACTS, RECORD_FLOW_DTYPE, RECORD_TCP_DTYPE, FlowAnalysis, _record_rows
from diagnose.conn.zeek import CONV_CONN_DTYPE, TCP_DTYPE, ConnStates
from diagnose.flows import CONV_DTYPE
from diagnose.pipeline import open_pass
from diagnose.tcp.analysis import TcpAnalyzer

DATA = Path(__file__).parent / "data"
CAPTURES = ["corpus-zeek/pop3.pcap", "corpus-zeek/ssh.pcap", "corpus-zeek/Teredo.pcap", "corpus/ja4/latest.pcapng",
            "fixtures/tcpdump/crafted/icmp.pcap", "fixtures/tcpdump/crafted/tcp.pcap", "lab/reject_icmp.pcap",
            "lab/syn_drop.pcap", "lab/zero_window.pcap"]


def _pass(path):
    run = open_pass(str(path))
    analyzer = TcpAnalyzer(run.flows)
    states, facts = ConnStates(), FlowFacts()
    with run.capture:
        for chunk in run.chunks():
            rows = analyzer.update(chunk.table, chunk.buf)
            states.update(chunk.buf, chunk.table, run.flows.count)
            facts.update(chunk.table, run.flows.count, run.flows.tcp_streams, rows)
    return run, analyzer, states, facts


def test_a_flow_without_tcp_facts_reads_what_a_zero_row_gives():
    derived = np.zeros(1, RECORD_TCP_DTYPE)
    _record_rows(np.zeros(0, CONV_DTYPE), np.zeros(0, CONV_CONN_DTYPE), np.zeros(1, FLOW_DTYPE),
                 np.zeros(1, TCP_FACTS_DTYPE), 1, np.zeros(0, TCP_DTYPE), np.zeros(0, RECORD_FLOW_DTYPE), derived)
    assert derived.tobytes() == _NO_TCP_FACTS.tobytes()


def test_records_read_the_pass_tables_and_the_pass_tables_are_released():
    seen = {"rst": 0, "icmp": 0, "syn": 0}
    for name in CAPTURES:
        run, analyzer, states, facts = _pass(DATA / name)
        n = run.flows.count
        tcp = facts.tcp[: facts.n_tcp].copy()
        icmp = {int(e["conv"]): e for e in facts.icmp_errors().copy()}
        conns = states.conns[:n].copy()
        completeness = analyzer.completeness[: run.flows.tcp_streams].copy()
        analyzer.release()  # the per-direction state is pass-only: completeness stays
        assert analyzer._dirs is None and np.array_equal(analyzer.completeness[: len(completeness)], completeness)
        analysis = FlowAnalysis(run.flows, states, facts, analyzer.completeness)
        assert states.conns is None and states.tcp is None and facts.flows is None and facts.tcp is None \
            and facts.icmp is None
        for key in seen:
            seen[key] += len(getattr(analysis.tables, key))
        for block in (1, 3, n):  # blocks that split the side tables' rows
            for cols in analysis.iter_columns(block):
                convs = run.flows.conversations[cols.lo : cols.lo + len(cols)]
                v = cols.values
                for i, cv in enumerate(convs):
                    conv = cols.lo + i
                    e = icmp.get(conv)
                    assert v["icmp_errors"][i] == (0 if e is None else e["icmp_count"])
                    if e is not None:
                        assert e["icmp_count"] > 0
                        assert v["icmp_error_frame"][i] == e["icmp_frame"]
                        assert v["icmp_error_time"][i] == e["icmp_ts"]
                    c = conns[conv]
                    if c["kind"]:
                        o = c["orig"]
                        assert v["orig_pkts"][i] == c["pkts"][o] and v["resp_pkts"][i] == c["pkts"][1 - o]
                        assert v["duration"][i] == c["last"] - c["start"]
                    if not cols.tcp[i]:
                        assert cols.lengths["syn_times"][i] == 0
                        continue
                    t = tcp[cv["stream"]]
                    syns = int(t["syn_count"].sum())
                    kept = min(syns, len(t["syn_times"]))
                    assert cols.lengths["syn_times"][i] == kept
                    micros = v["syn_times"][i][:kept]
                    expected = (t["syn_times"][:kept] - t["syn_times"][0] + 500) // 1000
                    assert np.array_equal(micros, expected)
                    assert v["rst_count"][i] == t["rst_count"].sum()
                    if t["rst_count"].sum():
                        assert v["rst_frame"][i] == t["rst_frame"] and v["rst_time"][i] == t["rst_ts"]
                        assert v["rst_ip_id"][i] == t["rst_ipid"] or cols.null["rst_ip_id"][i]
    assert all(seen.values()), seen  # every side table was exercised
