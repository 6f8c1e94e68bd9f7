"""The DNS answer kernel (dnsscan.address_answers) gives exactly what decoding the messages in Python gives, and
the latency rules' answer index (latency.DnsAnswers) finds the same lookup as a scan of every answer would."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.all import DNS, DNSQR, DNSRR, DNSRRMX, DNSRRSOA, DNSRROPT  # test-only: builds the messages

from diagnose.packet import PACKET_DTYPE
from diagnose.protocols.dnsscan import A_DONE, A_IN_PYTHON, DnsBatch, address_answers
from diagnose.rules.latency import LOOKUP_WINDOW, DnsAnswers

DATA = Path(__file__).parent / "data"


def responses() -> list[bytes]:
    q = [DNSQR(qname="www.example.com", qtype="A")]
    return [bytes(m) for m in (
        DNS(id=1, qr=1, qd=q, an=[DNSRR(rrname="www.example.com", type="A", rdata="192.0.2.1")]),
        DNS(id=2, qr=1, qd=q, an=[DNSRR(rrname="www.example.com", type="CNAME", rdata="edge.example.net"),
                                  DNSRR(rrname="edge.example.net", type="A", rdata="198.51.100.7"),
                                  DNSRR(rrname="edge.example.net", type="A", rdata="198.51.100.8")]),
        DNS(id=3, qr=1, qd=[DNSQR(qname="v6.example.com", qtype="AAAA")],
            an=[DNSRR(rrname="v6.example.com", type="AAAA", rdata="2001:db8::1"),
                DNSRR(rrname="v6.example.com", type="AAAA", rdata="::ffff:192.0.2.9")]),
        DNS(id=4, qr=1, qd=q, an=[DNSRRMX(rrname="example.com", exchange="mx.example.com"),
                                  DNSRR(rrname="www.example.com", type="A", rdata="192.0.2.2")]),
        DNS(id=5, qr=1, qd=q, an=[DNSRR(rrname="www.example.com", type="TXT", rdata="hello"),
                                  DNSRR(rrname="www.example.com", type="A", rdata="192.0.2.3")]),
        DNS(id=6, qr=1, rcode=3, qd=q, ns=[DNSRRSOA(rrname="example.com")], ar=[DNSRROPT()]),
        DNS(id=7, qr=1, qd=q + [DNSQR(qname="second.example", qtype="A")],
            an=[DNSRR(rrname="www.example.com", type="A", rdata="192.0.2.4")]),
        DNS(id=8, qr=1, qd=[], an=[DNSRR(rrname="x.example", type="A", rdata="192.0.2.5")]),
        DNS(id=9, qr=1, qd=[DNSQR(qname=".", qtype="NS")],
            an=[DNSRR(rrname=".", type="NS", rdata="a.root"), DNSRR(rrname="a.root", type=99, rdata=b"\x02ab"),
                DNSRR(rrname="a.root", type="A", rdata="192.0.2.6")]),
        DNS(id=10, qr=1, qd=[DNSQR(qname="odd\x01label.example")],
            an=[DNSRR(rrname="odd.example", type=1234, rdata=b"opaque"),
                DNSRR(rrname="odd.example", type="A", rdata="192.0.2.10")]),
    )] + [odd_names()]


def odd_names() -> bytes:
    """Labels with a space, a dot, a backslash and bytes above 0x7e, the second one through a pointer."""
    header = bytes.fromhex("002a8180" "0001" "0002" "0000" "0000")
    qname = b"\x03a b\x03x.y\x02\xff\\\x04caf\xe9\x00"
    question = qname + b"\x00\x01\x00\x01"
    pointer = b"\xc0\x0c"
    a = pointer + b"\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + bytes([192, 0, 2, 42])
    aaaa = b"\x05other\xc0\x10" + b"\x00\x1c\x00\x01\x00\x00\x00\x3c\x00\x10" + bytes(15) + b"\x01"
    return header + question + a + aaaa


def batch_of(messages: list[bytes], answered: list[bool]) -> DnsBatch:
    """A chunk of UDP DNS rows whose payloads are `messages` (time >= 0 marks an answered response)."""
    buf = np.frombuffer(b"".join(messages) + b"\0" * 8, np.uint8).copy()
    table = np.zeros(len(messages), PACKET_DTYPE)
    pos = 0
    for i, m in enumerate(messages):
        table[i]["data"] = pos
        table[i]["caplen"] = len(m)
        table[i]["payload_off"] = 0
        table[i]["payload_len"] = len(m)
        pos += len(m)
    n = len(messages)
    time = np.array([1000 * (i + 1) if a else -1 for i, a in enumerate(answered)], np.int64)
    none = np.full(n, -1, np.int64)
    return DnsBatch(buf, table, np.arange(n, dtype=np.int32), time, none, none, np.zeros(n, np.int64),
                    np.zeros(n, np.int64))


def decoded_answers(batch: DnsBatch) -> list:
    """What the latency rules read before the kernel: every message decoded in Python."""
    out = []
    for row, msg in batch.messages():
        if msg.response and msg.time_ns is not None:
            out.extend((row, a, msg.time_ns, msg.qname) for a in msg.answer_addresses())
    return out


def kernel_verdicts(batch: DnsBatch) -> np.ndarray:
    n = len(batch)
    how = np.empty(n, np.int64)
    address_answers(batch.buf, batch.table, batch.rows, batch.time, np.empty(256 * n, np.uint8), np.empty(n, np.int64),
                    np.empty(n, np.int64), np.empty(4 * n, np.int64), np.empty(4 * n, np.int64),
                    np.empty(4 * n, np.uint64), np.empty(4 * n, np.uint64), how)
    return how


def test_well_formed_answers_are_read_in_the_kernel():
    msgs = responses()
    batch = batch_of(msgs, [True] * len(msgs))
    got = sorted(batch.address_answers(), key=lambda a: a[0])
    assert got == decoded_answers(batch)
    assert ("192.0.2.1" in [a[1] for a in got]) and ("2001:db8::1" in [a[1] for a in got])
    assert [a[1] for a in got if a[0] == 1] == ["198.51.100.7", "198.51.100.8"]  # a CNAME chain's addresses
    how = kernel_verdicts(batch)
    # MX and TXT rdata are checked by the Python parser: those messages go there; the rest stay in the kernel
    assert how.tolist() == [A_DONE, A_DONE, A_DONE, A_IN_PYTHON, A_IN_PYTHON, A_DONE, A_DONE, A_DONE, A_IN_PYTHON,
                            A_DONE, A_DONE]
    assert len(got) == 13
    assert got[-1] == (10, "::1", 11000, "a\\x20b.x.y.\\xff\\.caf\\xe9")


def test_unanswered_rows_are_skipped():
    msgs = responses()
    batch = batch_of(msgs, [i % 2 == 0 for i in range(len(msgs))])
    assert sorted(batch.address_answers(), key=lambda a: a[0]) == decoded_answers(batch)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 6), st.booleans())
def test_damaged_messages_match_the_python_parser(seed, n_mutations, cut):
    """Flipped bytes and cut messages: names that loop or run off the end, counts that lie, short rdata."""
    rng = random.Random(seed)
    msgs = []
    for m in responses():
        b = bytearray(m)
        for _ in range(n_mutations):
            b[rng.randrange(len(b))] = rng.choice((0, 1, 4, 16, 0x3F, 0x40, 0xC0, 0xC0 | rng.randrange(4),
                                                   rng.randrange(256)))
        if cut:
            b = b[: rng.randrange(12, len(b) + 1)]
        msgs.append(bytes(b))
    batch = batch_of(msgs, [True] * len(msgs))
    assert sorted(batch.address_answers(), key=lambda a: a[0]) == decoded_answers(batch)


@pytest.mark.parametrize("capture", [
    "lab/dns_nxdomain.pcap", "lab/healthy_http.pcap", "corpus/tcpdump/dns_udp.pcap", "corpus/tcpdump/dns-uri.pcap",
    "corpus/zeek/dns-two-responses.pcap", "corpus/zeek/dns-edns-ecs.pcap", "corpus/zeek/ipv6-fragmented-dns.pcap",
    "fixtures/tcpdump/crafted/dns.pcap"])
def test_answers_of_a_capture_equal_the_decoded_messages(capture):
    from diagnose.rules.run import AnalysisPass

    analysis = AnalysisPass(str(DATA / capture), dns_answers=True)
    reference: dict[str, list] = {}
    for ctx in analysis.contexts():
        app = ctx.extra["app"]
        ts = app.table["ts"]
        for row, msg in app.rows("dns"):  # decodes every DNS message of the chunk
            if msg.response and msg.time_ns is not None:
                for address in msg.answer_addresses():
                    reference.setdefault(address, []).append((int(ts[row]) / 1e9, msg.time_ns / 1e9, msg.qname))
    assert analysis.dns_answers.by_address == reference


def linear_lookup(entries, when):
    best = None
    for answered, duration, name in entries:
        if answered <= when + 1e-6 and when - answered <= LOOKUP_WINDOW and (best is None or answered > best[0]):
            best = (answered, duration, name)
    return None if best is None else (best[1], best[2])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 5)), max_size=40), st.lists(st.integers(-10, 150),
                                                                                        max_size=20))
def test_lookup_before_equals_a_scan_of_every_answer(answers, whens):
    index = DnsAnswers()
    for k, (t, d) in enumerate(answers):  # out of time order, repeated times: the first answer of a time wins
        index.add("192.0.2.1", t * 500_000_000, d * 100_000_000, f"n{k}")
    entries = index.by_address.get("192.0.2.1", [])
    assert entries == [(t * 0.5, d / 10, f"n{k}") for k, (t, d) in enumerate(answers)]
    for w in whens:
        when = w * 0.5
        assert index.lookup_before("192.0.2.1", when) == linear_lookup(entries, when)
        assert index.lookup_before("192.0.2.1", when + 1e-7) == linear_lookup(entries, when + 1e-7)
    assert index.lookup_before("198.51.100.1", 10.0) is None


def test_a_name_longer_than_its_room_is_left_to_python():
    label = b"\x3f" + b"\xff" * 63  # 63 bytes shown as 252 characters
    header = bytes.fromhex("00078180" "0001" "0001" "0000" "0000")
    msg = header + label * 3 + b"\x00\x00\x01\x00\x01" + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"
    batch = batch_of([msg], [True])
    assert kernel_verdicts(batch).tolist() == [A_IN_PYTHON]
    got = batch.address_answers()
    assert got == decoded_answers(batch) and got[0][3] == ".".join(["\\xff" * 63] * 3)


ADDRESSES = ["192.0.2.1", "192.0.2.2", "2001:db8::1", "::ffff:192.0.2.1", "198.51.100.7"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 100), st.integers(0, 5), st.booleans()), max_size=60),
       st.lists(st.tuples(st.integers(0, 4), st.integers(-10, 150), st.booleans()), max_size=30),
       st.sampled_from([0, 1_700_000_000]))
def test_lookup_of_many_connections_equals_a_scan_of_every_answer(answers, queries, epoch):
    """Several addresses (an IPv4 one and the same bits as an IPv4-mapped IPv6 one are different addresses) and
    queries at and just past answer times, in one call: each query finds what a scan of its address's answers
    finds. Times near 0 are searched by rank, a capture's epoch times by their bits."""
    from diagnose.addresses import format_address, parse_address

    index = DnsAnswers()
    for k, (a, t, d, named) in enumerate(answers):
        index.add(ADDRESSES[a], epoch * 10**9 + t * 500_000_000, d * 100_000_000 + k, f"n{k}" if named else None)
    entries = index.by_address
    keys = [parse_address(a) for a in ADDRESSES]
    which = np.array([a for a, _, _ in queries], np.int64)
    when = np.array([epoch + w * 0.5 + (1e-7 if shifted else 0.0) for _, w, shifted in queries], np.float64)
    found, duration, name = index.lookup(keys, which, when)
    for k, (a, _, _) in enumerate(queries):
        want = linear_lookup(entries.get(format_address(*keys[a]), []), float(when[k]))  # by_address: canonical
        assert (want is not None) == bool(found[k])
        if want is not None:
            assert (float(duration[k]), name[k]) == want
            assert index.lookup_before(ADDRESSES[a], float(when[k])) == want


def test_names_of_found_answers_are_read_back_exactly():
    """Names are cut out of the answers' name buffer: short ASCII ones at once, long or non-ASCII ones (and names
    holding a NUL) one at a time; a missing name stays None."""
    index = DnsAnswers()
    names = ["www.example.com", None, "", "x" * 200, "caf\u00e9.example", "a\x00b.example", "<Root>", "b" * 128]
    for k, name in enumerate(names):
        index.add(f"192.0.2.{k + 1}", 1_000_000_000 * (k + 1), 5_000_000, name)
    keys = [(4, 0, 0xC0000200 + k + 1) for k in range(len(names))]
    index.add("not an address", 1_000_000_000, 7, "odd.example")  # kept, found by no connection
    found, duration, got = index.lookup(keys, np.arange(len(names)), np.full(len(names), 20.0))
    assert found.all() and duration.tolist() == [0.005] * len(names)
    assert got.tolist() == names
    assert index.by_address["not an address"] == [(1.0, 7e-9, "odd.example")]
    assert index.lookup_before("not an address", 2.0) is None
