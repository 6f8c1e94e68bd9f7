"""Display filters evaluated on hand-made chunks: Wireshark 4.x semantics, one behaviour per test.

The tricky cases of anchors.md §2.4 are here by number; the parity tests check the same against tshark on real
captures.
"""

from __future__ import annotations

import numpy as np
import pytest

from chunkbuild import ETH_IPV4, chunk, tcp_row, udp_row
from diagnose.fields import ChunkContext, Field, FieldType, Occurrence, field, lookup
from diagnose.filters import compile_display_filter
from diagnose.packet import ST_ICMP_ERROR

A, B, C = 0x0A000001, 0x0A000002, 0x0A000003  # 10.0.0.1, 10.0.0.2, 10.0.0.3

# ---- a small chunk: TCP A->B, TCP B->A, UDP A->C, ARP, TCP C->C with a payload --------------------------------------

HTTP = b"GET /index.html HTTP/1.1\r\nHost: Example.com\r\n\r\n"


def _ctx() -> ChunkContext:
    frames = [
        ETH_IPV4 + bytes(20) + bytes.fromhex("9c40005000000001000000005002200000000000"),
        ETH_IPV4 + bytes(20) + bytes.fromhex("00509c4000000001000000015012200000000000"),
        ETH_IPV4 + bytes(20) + bytes.fromhex("14e90035000c0000") + b"abcd",
        bytes.fromhex("ffffffffffff0200000000010806") + bytes(28),
        ETH_IPV4 + bytes(20) + bytes.fromhex("1f90c35000000001000000005018200000000000") + HTTP,
    ]
    buf, table = chunk(frames)
    tcp_row(table, 0, src=A, dst=B, sport=40000, dport=80, flags=0x002)
    tcp_row(table, 1, src=B, dst=A, sport=80, dport=40000, flags=0x012, ttl=63)
    udp_row(table, 2, src=A, dst=C, sport=5353, dport=53, payload=4)
    table[3]["eth_type"], table[3]["l3_off"], table[3]["arp_op"] = 0x0806, 14, 1
    tcp_row(table, 4, src=C, dst=C, sport=8080, dport=50000, flags=0x018, payload=len(HTTP))
    return ChunkContext(buf, table)


def frames(text: str, ctx: ChunkContext | None = None) -> list[int]:
    ctx = ctx or _ctx()
    mask = compile_display_filter(text).evaluate(ctx)
    return [int(f) for f in ctx.table["frame"][mask]]


def test_existence_of_protocols_and_fields():
    assert frames("tcp") == [1, 2, 5]
    assert frames("udp") == [3]
    assert frames("ip") == [1, 2, 3, 5]
    assert frames("arp") == [4]
    assert frames("tcp.flags.syn") == [1, 2, 5]  # a bool field alone tests existence, not truth
    assert frames("!ip") == [4]


def test_1_not_equal_requires_the_field():
    assert frames("ip.dst != 10.0.0.2") == [2, 3, 5]
    assert frames("not ip.dst == 10.0.0.2") == [2, 3, 4, 5]
    assert frames("not ip.dst or ip.dst != 10.0.0.2") == [2, 3, 4, 5]


def test_2_not_equal_on_a_multi_occurrence_field_means_all_not_equal():
    assert frames("ip.addr != 10.0.0.1") == [5]
    assert frames("ip.addr !== 10.0.0.1") == [1, 2, 3, 5]
    assert frames("ip.addr any_ne 10.0.0.1") == frames("ip.addr !== 10.0.0.1")
    assert frames("ip.addr all_ne 10.0.0.1") == frames("ip.addr != 10.0.0.1")


def test_3_equal_on_a_multi_occurrence_field_means_any():
    assert frames("tcp.port == 80") == [1, 2]
    assert frames("ip.addr == 10.0.0.3") == [3, 5]
    assert frames("ip.addr === 10.0.0.3") == [5]


def test_4_matches_ignores_case_contains_does_not():
    assert frames('frame contains "GET"') == [5]
    assert frames('frame contains "get"') == []
    assert frames('frame matches "get /INDEX"') == [5]
    assert frames('frame matches "(?-i)get"') == []
    assert frames('tcp contains "Host: Example"') == [5]  # searching a protocol covers its payload
    assert frames('frame contains 47:45:54') == [5]
    assert frames("frame matches \"host: example\\\\.com\"") == [5]


def test_5_a_dash_needs_spaces_to_subtract():
    assert frames("tcp.srcport - 1 == 79") == [2]
    with pytest.raises(Exception, match="neither a field"):
        compile_display_filter("tcp.srcport-1 == 79")


def test_6_slice_forms():
    # frame bytes 12..13 are the EtherType 08 00; [i:len] and [i-j] (inclusive) both give two bytes
    assert frames("frame[12:2] == 08:00") == [1, 2, 3, 5]
    assert frames("frame[12-13] == 08:00") == [1, 2, 3, 5]
    assert frames("frame[0:6] == ff:ff:ff:ff:ff:ff") == [4]
    assert frames("frame[-2:] == 0d:0a") == [5]
    assert frames("eth.dst[0:3] == 02:00:00") == []  # the table's MAC columns are empty here
    assert frames("frame[0,12-13] == 02:08:00") == [1, 2, 3, 5]


def test_7_a_slice_past_the_end_does_not_exist():
    # frames 1, 2: 54 bytes; 3: 46; 4: 42; 5: 101
    assert frames("frame[53]") == [1, 2, 5]
    assert frames("frame[50-53]") == [1, 2, 5]
    assert frames("frame[100-101]") == []
    assert frames("frame[99-100]") == [5]
    assert frames('frame[60:20] contains "index"') == []  # bytes 60..79 hold "ndex.html HTTP/1.1..."
    assert frames('frame[60:20] contains "ndex"') == [5]
    assert frames('frame[90:20] contains "com"') == []  # would run past byte 100


def test_8_bitwise_and_is_a_truth_test_and_both_bits_need_a_comparison():
    assert frames("tcp.flags & 0x02") == [1, 2]
    assert frames("tcp.flags & 0x12") == [1, 2, 5]
    assert frames("tcp.flags & 0x12 == 0x12") == [2]
    assert frames("tcp.flags bitwise_and 0x10") == [2, 5]


def test_9_short_hex_numbers_are_bytes_in_byte_comparisons():
    assert frames("frame[12] == 0x08") == [1, 2, 3, 4, 5]  # ARP's EtherType starts with 08 too
    assert frames("frame[13] == 06") == [4]
    assert frames("frame[13] == 6") == [4]
    with pytest.raises(Exception, match="byte string"):
        compile_display_filter("frame[12:2] == 0x0800")


def test_10_not_binds_tighter_than_and():
    assert frames("not tcp.port == 80 and udp") == [3]
    assert frames("not (tcp.port == 80 and udp)") == [1, 2, 3, 4, 5]


def test_11_string_comparison_is_lexicographic_numbers_numeric():
    # source ports 40000, 80, 8080: as strings only "40000" sorts before "5"; as numbers 80 is the small one
    assert frames('string(tcp.srcport) <= "5"') == [1]
    assert frames("tcp.srcport <= 5000") == [2]


def test_logic_operators_and_precedence():
    assert frames("tcp xor udp") == [1, 2, 3, 5]
    assert frames("tcp ^^ tcp.port == 80") == [5]
    assert frames("udp or tcp and tcp.flags.ack == 1") == [2, 3, 5]  # and binds tighter than or


def test_quantifiers():
    assert frames("tcp.port > 1000") == [1, 2, 5]
    assert frames("all tcp.port > 1000") == [5]
    assert frames("any tcp.port < 100") == [1, 2]
    assert frames("all ip.addr == 10.0.0.3") == [5]


def test_membership_and_ranges():
    assert frames("tcp.port in {80, 443}") == [1, 2]
    assert frames("tcp.port in {8000..8100}") == [5]
    assert frames("ip.addr in {10.0.0.2 .. 10.0.0.3}") == [1, 2, 3, 5]
    assert frames("tcp.port not in {80, 443}") == [5]
    assert frames("frame.number in {1..2, 5}") == [1, 2, 5]


def test_cidr_literals():
    assert frames("ip.src == 10.0.0.0/30") == [1, 2, 3, 5]
    assert frames("ip.src == 10.0.0.2/31") == [2, 5]
    assert frames("ip.dst == 10.0.0.0/31") == [2]


def test_integer_literal_forms_and_value_names():
    assert frames("tcp.dstport == 0x50") == [1]
    assert frames("tcp.dstport == 0120") == [1]  # octal
    assert frames("tcp.dstport == 0b1010000") == [1]
    assert frames("ip.proto == \"UDP\"") == [3]
    assert frames("ip.ttl == 'a'") == []


def test_arithmetic_on_fields():
    assert frames("tcp.srcport + 1 == 81") == [2]
    assert frames("{tcp.srcport * 2} == 160") == [2]
    assert frames("tcp.dstport / 2 == 40") == [1]
    assert frames("tcp.srcport % 7 == 3") == [2]  # 40000 % 7 = 2, 80 % 7 = 3, 8080 % 7 = 2
    assert frames("-tcp.srcport == -80") == [2]
    assert frames("tcp.srcport > tcp.dstport") == [1]
    assert frames("tcp.srcport != tcp.dstport") == [1, 2, 5]


def test_functions():
    assert frames("len(tcp) == 20") == [1, 2, 5]
    assert frames("len(frame) > 100") == [5]
    assert frames("count(ip.addr) == 2") == [1, 2, 3, 5]
    assert frames("count(ip.addr) == 0") == [4]
    assert frames('string(ip.src) == "10.0.0.2"') == [2]
    assert frames("max(tcp.srcport, tcp.dstport) == 50000") == [5]
    assert frames("min(tcp.srcport, tcp.dstport) == 80") == [1, 2]
    assert frames("abs(tcp.srcport - 100) == 20") == [2]
    assert frames("ip_rfc1918(ip.src)") == [1, 2, 3, 5]
    assert frames('ip_special_name(ip.dst) == "Private-Use"') == [1, 2, 3, 5]


def test_times():
    assert frames("frame.time_relative >= 2") == [3, 4, 5]
    assert frames("frame.time_relative == 1.0") == [2]
    assert frames("frame.time_epoch > 12.5") == [4, 5]
    assert frames('frame.time >= "1970-01-01 00:00:13Z"') == [4, 5]


def test_layers_select_inner_and_outer_headers():
    ip_outer = bytes.fromhex("4500003800000000400100000a0000090a000001")
    quoted = bytes.fromhex("450000280001000040060000" "0a000001" "0a000002") + bytes.fromhex("9c4a1f90")
    buf, table = chunk([ETH_IPV4 + ip_outer + bytes.fromhex("0303000000000000") + quoted])
    r = table[0]
    r["ipv"], r["eth_type"], r["l3_off"], r["l4_off"], r["ip_proto"], r["ip_hl"], r["l4_len"] = \
        4, 0x0800, 14, 34, 1, 20, 32
    r["src_lo"], r["dst_lo"], r["icmp_type"], r["status"] = 0x0A000009, 0x0A000001, 3, ST_ICMP_ERROR
    r["q_ipv"], r["q_proto"], r["q_src_lo"], r["q_dst_lo"], r["q_sport"], r["q_dport"] = 4, 6, A, B, 40010, 8080
    ctx = ChunkContext(buf, table)
    assert frames("ip.src#1 == 10.0.0.9", ctx) == [1]
    assert frames("ip.src#2 == 10.0.0.1", ctx) == [1]
    assert frames("ip.src#2 == 10.0.0.9", ctx) == []
    assert frames("ip.src#[-1] == 10.0.0.1", ctx) == [1]
    assert frames("ip.addr#[1-2] == 10.0.0.2", ctx) == [1]
    assert frames("tcp.dstport == 8080 && icmp", ctx) == [1]


# ---- application-layer style fields: sparse values as object arrays -------------------------------------------------

@field("test.eval.host", FieldType.STRING, "A string field for tests (object array values)")
def _host(ctx):
    values = np.empty(ctx.n, dtype=object)
    present = np.zeros(ctx.n, bool)
    if ctx.n >= 5:
        values[4], present[4] = "Example.com", True
        values[0], present[0] = "other.test", True
    return [Occurrence(values, present)]


@field("test.eval.blob", FieldType.BYTES, "A bytes field for tests (object array values)")
def _blob(ctx):
    values = np.empty(ctx.n, dtype=object)
    present = np.zeros(ctx.n, bool)
    if ctx.n >= 5:
        values[4], present[4] = b"\x16\x03\x01\x02\x00", True
    return [Occurrence(values, present)]


def test_string_fields():
    assert frames('test.eval.host == "Example.com"') == [5]
    assert frames("test.eval.host == Example.com") == [5]  # unquoted strings are allowed
    assert frames('lower(test.eval.host) == "example.com"') == [5]
    assert frames('upper(test.eval.host) contains "OTHER"') == [1]
    assert frames('test.eval.host matches "^example"') == [5]
    assert frames('test.eval.host contains "example"') == []
    assert frames("len(test.eval.host) == 11") == [5]
    assert frames('test.eval.host[0:5] == "Examp"') == [5]
    assert frames('test.eval.host > "p"') == []
    assert frames('test.eval.host < "p"') == [1, 5]


def test_bytes_fields():
    assert frames("test.eval.blob == 16:03:01:02:00") == [5]
    assert frames("test.eval.blob[0] == 16") == [5]
    assert frames("test.eval.blob contains 01:02") == [5]
    assert frames("test.eval.blob[1:2] == 03:01") == [5]


def test_only_the_fields_a_filter_names_are_extracted():
    calls = []

    @field("test.eval.expensive", FieldType.UINT, "Records that it was extracted")
    def _expensive(ctx):
        calls.append(1)
        return [Occurrence(np.zeros(ctx.n, np.int64), np.ones(ctx.n, bool))]

    flt = compile_display_filter("tcp.port == 80 && ip.ttl == 63")
    assert flt.fields == {"tcp.port", "ip.ttl"}
    flt.evaluate(_ctx())
    assert calls == []
    compile_display_filter("test.eval.expensive == 0").evaluate(_ctx())
    assert calls == [1]


def test_a_field_used_twice_is_extracted_once_per_chunk():
    ctx = _ctx()
    extracted = []
    original = lookup("tcp.srcport").extractor
    try:
        object.__setattr__(lookup("tcp.srcport"), "extractor",
                           lambda c: extracted.append(1) or original(c))
        compile_display_filter("tcp.srcport == 80 or tcp.srcport == 8080 or tcp.srcport > 1").evaluate(ctx)
    finally:
        object.__setattr__(lookup("tcp.srcport"), "extractor", original)
    assert extracted == [1]


def test_empty_chunks():
    buf, table = chunk([])
    assert compile_display_filter("tcp").evaluate(ChunkContext(buf, table)).shape == (0,)


def test_a_resolver_can_add_names_for_one_compile():
    threshold = Field("param.threshold", FieldType.UINT, "A rule parameter",
                      lambda ctx: [Occurrence(np.full(ctx.n, 1000, np.int64), np.ones(ctx.n, bool))])

    def resolve(name):
        return threshold if name == "param.threshold" else lookup(name)

    flt = compile_display_filter("tcp.srcport > param.threshold", fields=resolve)
    assert [int(f) for f in _ctx().table["frame"][flt.evaluate(_ctx())]] == [1, 5]
    assert lookup("param.threshold") is None
    with pytest.raises(Exception, match="neither a field"):
        compile_display_filter("tcp.srcport > param.threshold")


def test_a_mac_compares_with_a_byte_slice():
    ctx = _ctx()
    ctx.table["eth_src"][0] = 0x020000000001  # the frame's own source MAC; other rows keep 0
    assert frames("eth.src == frame[6:6]", ctx) == [1]
    assert frames("frame[6:6] == eth.src", ctx) == [1]
    assert frames("eth.src[4:2] == 00:01", ctx) == [1]
