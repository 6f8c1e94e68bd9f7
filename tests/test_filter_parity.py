"""Parity with tshark (display filters) and tcpdump (capture filters) on real and built captures.

Two sources of expected frame sets, both stored (the tools are not needed at test time):
* the corpus oracles (tests/data/corpus/**/*.oracle.json): tshark -Y and tcpdump frame sets per filter;
* tests/data/fixtures/filters/cases.json.gz (tests/oracles/make_filter_fixtures.py): hundreds of (capture, filter)
  cases covering the article's filters, anchors.md §2.4-2.5 and encapsulations built for the purpose.

Display filters naming fields of other stages (dns.*, http.*, tls.*, tcp.analysis.*: registered by their own modules,
fed by analysis results attached to the chunk context, and checked against tshark by those modules' tests) are set
aside here, and so are fields nobody registers yet. Everything else must match exactly, except the few differences
listed in KNOWN_DIFFERENCES, each with its reason.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from diagnose.capture import open_capture
from diagnose.errors import CaptureError, FilterError
from diagnose.fields import iter_contexts, lookup
from diagnose.filters import BpfFilter, compile_display_filter
from diagnose.pipeline import Pass

DATA = Path(__file__).parent / "data"
CASES_FILE = DATA / "fixtures" / "filters" / "cases.json.gz"

# Fields of later stages: a display case naming one waits for them (it is counted, not silently passed).
PENDING_FIELD_PREFIXES = ("dns", "http", "tls", "tcp.analysis", "x509", "ssl", "frame.protocols", "data")

# (capture, language, filter): why we differ from the tool, on purpose or because of a stage we do not own.
KNOWN_DIFFERENCES = {
    ("corpus/zeek/ip4-trunc.pcap", "display", "!(tcp.port == 443) && ip"):
        "IPv4 header cut after 6 bytes: tshark still shows `ip`; the decoder leaves no network layer (l3_off -1)",
    ("corpus/zeek/ip4-trunc.pcap", "display", "ip"):
        "same frame: IPv4 header cut after 6 bytes",
    ("corpus/zeek/linux_dlt_sll2.pcap", "display", "arp"):
        "frame 6 is RARP (EtherType 0x8035), which Wireshark's arp dissector shows; the decoder does not decode RARP",
}


def _frames_from_ranges(text: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        out.extend(range(int(low), int(high or low) + 1))
    return out


@lru_cache(maxsize=1)
def _cases() -> list[dict]:
    return json.loads(gzip.decompress(CASES_FILE.read_bytes()))["cases"]


def _oracle_cases() -> list[dict]:
    cases = []
    for oracle in sorted((DATA / "corpus").rglob("*.oracle.json")):
        data = json.loads(oracle.read_text())
        capture = oracle.relative_to(DATA).as_posix()[: -len(".oracle.json")]
        for flt, expected in (data.get("display_filters") or {}).items():
            cases.append(_case(capture, "display", flt, expected))
        for flt, expected in (data.get("bpf") or {}).items():
            cases.append(_case(capture, "bpf", flt, expected))
    return cases


def _case(capture: str, language: str, flt: str, expected) -> dict:
    case = {"capture": capture, "language": language, "filter": flt}
    if isinstance(expected, str):
        case["error"] = expected
    else:
        case["frames"] = ",".join(map(str, expected))
    return case


def _foreign(flt) -> bool:
    """Whether a compiled display filter reads fields registered outside engine/fields (other stages)."""
    return any(not lookup(name).extractor.__module__.startswith("diagnose.fields.") for name in flt.fields)


def _pending(flt: str, error: FilterError) -> bool:
    if "neither a field" not in error.message and "unknown field" not in error.message:
        return False
    word = error.expression[error.column:].split()[0].strip("()!")
    return word.startswith(PENDING_FIELD_PREFIXES)


def _unreadable(message: str) -> bool:
    """Tool errors about the file, not the filter: nothing to compare."""
    return any(s in message for s in ("truncated", "unknown file format", "pcap_loop", "appears to have been cut",
                                      "isn't a capture file"))


def _file_big_endian(path: Path) -> bool:
    head = path.read_bytes()[:4]
    return head in (bytes.fromhex("a1b2c3d4"), bytes.fromhex("a1b23c4d"))


def _run_capture(capture: str, cases: list[dict]) -> dict[tuple[str, str], list[int] | str]:
    """Evaluate every case of one capture in a single pass; a FilterError is the result of its case."""
    path = DATA / capture
    compiled: dict[tuple[str, str], object] = {}
    results: dict[tuple[str, str], list[int] | str] = {}
    for case in cases:
        key = (case["language"], case["filter"])
        try:
            if case["language"] == "display":
                compiled[key] = compile_display_filter(case["filter"])
                if _foreign(compiled[key]):
                    results[key] = "other stage"
                    del compiled[key]
                    continue
            else:
                compiled[key] = BpfFilter(case["filter"], big_endian=_file_big_endian(path))
        except FilterError as exc:
            results[key] = exc
        else:
            results[key] = []
    try:
        with open_capture(str(path)) as capture_file:
            fmt = capture_file.info.format
            for ctx in iter_contexts(Pass(capture_file).chunks(), capture_format=fmt):
                for key, flt in compiled.items():
                    if not isinstance(results[key], list):
                        continue
                    try:
                        mask = flt.evaluate(ctx)
                    except FilterError as exc:  # BPF: compiled per link type on first use
                        results[key] = exc
                        continue
                    results[key].extend(int(f) for f in ctx.table["frame"][mask])
            for key, flt in compiled.items():  # link types of interfaces without packets count too
                if isinstance(flt, BpfFilter) and isinstance(results[key], list):
                    try:
                        flt.prepare(i.linktype for i in capture_file.info.interfaces)
                    except FilterError as exc:
                        results[key] = exc
    except CaptureError:
        pass  # damaged files: compare the frames before the damage, as the tools do
    return results


def _compare(all_cases: list[dict]) -> tuple[int, int, list[str]]:
    by_capture: dict[str, list[dict]] = {}
    for case in all_cases:
        by_capture.setdefault(case["capture"], []).append(case)
    checked = pending = 0
    failures = []
    for capture, cases in sorted(by_capture.items()):
        results = _run_capture(capture, cases)
        for case in cases:
            key = (case["language"], case["filter"])
            if (capture, *key) in KNOWN_DIFFERENCES:
                continue
            got = results[key]
            where = f"{capture} [{case['language']}] {case['filter']!r}"
            if got == "other stage":
                pending += 1
                continue
            if "error" in case:
                if _unreadable(case["error"]):
                    continue
                checked += 1
                if not isinstance(got, FilterError):
                    failures.append(f"{where}: the tool refuses it ({case['error'].strip()}), we matched {got[:8]}")
                elif case["language"] == "bpf" and got.message not in case["error"]:
                    failures.append(f"{where}: tcpdump says {case['error'].strip()!r}, we say {got.message!r}")
                continue
            if isinstance(got, FilterError):
                if case["language"] == "display" and _pending(case["filter"], got):
                    pending += 1
                    continue
                checked += 1
                failures.append(f"{where}: {got.one_line()}")
                continue
            checked += 1
            expected = _frames_from_ranges(case["frames"])
            if got != expected:
                missing = sorted(set(expected) - set(got))[:10]
                extra = sorted(set(got) - set(expected))[:10]
                failures.append(f"{where}: missing {missing}, extra {extra}")
    return checked, pending, failures


def test_corpus_oracles_match_tshark_and_tcpdump():
    checked, pending, failures = _compare(_oracle_cases())
    assert not failures, "\n".join(failures)
    assert checked >= 500, checked  # 57 corpus captures x 12 BPF + the display filters with known fields


def test_filter_cases_match_tshark_and_tcpdump():
    cases = _cases()
    checked, pending, failures = _compare(cases)
    assert not failures, f"{len(failures)} of {checked} differ:\n" + "\n".join(failures[:60])
    assert checked >= 150


def test_cases_cover_the_article_and_the_tricky_semantics():
    filters = {(c["language"], c["filter"]) for c in _cases()}
    for wanted in [
        ("display", "tcp.flags.syn == 1 && tcp.flags.ack == 0"), ("display", "tcp.flags.reset == 1"),
        ("display", "tcp.analysis.retransmission"), ("display", "tcp.analysis.zero_window"),
        ("display", "tls.handshake.type == 1"), ("display", "dns.flags.rcode == 3"),
        ("display", "http.response.code >= 400"), ("display", "ip.addr != 10.99.1.2"),
        ("display", "ip.addr !== 10.99.1.2"), ("display", "not ip.dst == 10.99.1.2"),
        ("display", "frame matches \"get\""), ("display", "frame contains \"get\""),
        ("display", "tcp.port - 1 == 79"), ("display", "frame[100-199]"), ("display", "tcp.flags & 0x02"),
        ("display", "frame[12] == 08"), ("display", "not tcp.port == 80 and udp"),
        ("display", "string(tcp.srcport) <= \"35\""),
        ("bpf", "tcp[tcpflags] & tcp-syn != 0"), ("bpf", "tcp or udp and port 53"), ("bpf", "vlan and tcp"),
        ("bpf", "vlan 100 and vlan 200"), ("bpf", "host 10.0.0.2 and 10.0.0.9"), ("bpf", "less 60"),
        ("bpf", "ip[6:2] & 0x1fff = 0"), ("bpf", "icmp[icmptype] = icmp-echo"), ("bpf", "port domain"),
    ]:
        assert wanted in filters, wanted
    assert len(_cases()) >= 150
