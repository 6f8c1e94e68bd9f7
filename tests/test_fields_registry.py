"""The field registry: registration, types, did-you-mean, and extraction from hand-made packet tables.

Tables are filled by hand against the packet.py contract (no decoder involved), so each test says exactly which
columns a field reads and what Wireshark would show for them.
"""

from __future__ import annotations

import numpy as np
import pytest

from diagnose.fields import ChunkContext, Field, FieldType, Occurrence, all_fields, field, lookup, suggest
from diagnose.fields.registry import DuplicateField, register
from chunkbuild import chunk, tcp_row
from diagnose.packet import ST_ICMP_ERROR, new_table

CORE_FIELDS = """frame.number frame.time_epoch frame.time_relative frame.len frame.cap_len eth.src eth.dst eth.addr
eth.type vlan.id ip.src ip.dst ip.addr ip.ttl ip.id ip.proto ip.len ip.hdr_len ip.flags.df ip.flags.mf
ip.frag_offset ipv6.src ipv6.dst ipv6.addr ipv6.hlim ipv6.nxt tcp.srcport tcp.dstport tcp.port tcp.seq_raw
tcp.ack_raw tcp.flags tcp.flags.syn tcp.flags.ack tcp.flags.fin tcp.flags.reset tcp.flags.push tcp.flags.urg
tcp.flags.ece tcp.flags.cwr tcp.window_size_value tcp.hdr_len tcp.len tcp.stream tcp.options.mss_val
tcp.options.wscale.shift udp.srcport udp.dstport udp.port udp.length udp.stream icmp.type icmp.code icmpv6.type
icmpv6.code arp.opcode eth vlan ip ipv6 tcp udp icmp icmpv6 arp frame""".split()


@pytest.mark.parametrize("name", CORE_FIELDS)
def test_every_packet_table_field_is_registered_with_a_type_and_description(name):
    found = lookup(name)
    assert found is not None, name
    assert isinstance(found.type, FieldType) and found.description


def test_protocols_are_type_none_and_addresses_are_typed():
    assert lookup("tcp").type == FieldType.NONE
    assert lookup("ip.src").type == FieldType.IPV4
    assert lookup("ipv6.src").type == FieldType.IPV6
    assert lookup("eth.src").type == FieldType.ETHER
    assert lookup("tcp.flags.syn").type == FieldType.BOOL
    assert lookup("frame.time_relative").type == FieldType.RELTIME
    assert lookup("frame.time_epoch").type == FieldType.TIME


def test_unknown_names_get_a_suggestion():
    assert lookup("tcp.flgs.syn") is None
    assert suggest("tcp.flgs.syn") == "tcp.flags.syn"
    assert suggest("ip.scr") == "ip.src"
    assert suggest("completely.unrelated.thing") is None


def test_the_reference_is_sorted_and_complete():
    names = [f.name for f in all_fields()]
    assert names == sorted(names)
    assert set(CORE_FIELDS) <= set(names)


def test_other_modules_register_with_the_decorator_and_duplicates_are_refused():
    @field("test.only.answer", FieldType.UINT, "A field registered by a test")
    def _answer(ctx):
        return [Occurrence(np.full(ctx.n, 42, np.int64), np.ones(ctx.n, bool))]

    registered = lookup("test.only.answer")
    assert registered.protocol == "test" and registered.type == FieldType.UINT
    ctx = ChunkContext(np.zeros(0, np.uint8), new_table(3))
    assert registered.extract(ctx)[0].values.tolist() == [42, 42, 42]
    with pytest.raises(DuplicateField):
        register(Field("test.only.answer", FieldType.UINT, "again", _answer))


# ---- extraction from hand-made tables ----------------------------------------------------------------------------


def _values(name: str, ctx: ChunkContext) -> list[list]:
    """Per row, the present occurrences of a field (like tshark -E occurrence=a)."""
    occurrences = lookup(name).extract(ctx)
    out = []
    for i in range(ctx.n):
        row = []
        for o in occurrences:
            if o.present[i]:
                v = o.values[i]
                row.append(tuple(int(x) for x in v) if np.ndim(v) else int(v))
        out.append(row)
    return out


def test_frame_fields_and_times_relative_to_the_capture_start():
    buf, table = chunk([bytes(60), bytes(70)])
    table["wirelen"][1] = 1514
    ctx = ChunkContext(buf, table, first_ts=5_000_000_000, prev_ts=9_500_000_000)
    assert _values("frame.number", ctx) == [[1], [2]]
    assert _values("frame.len", ctx) == [[60], [1514]]
    assert _values("frame.cap_len", ctx) == [[60], [70]]
    assert _values("frame.time_relative", ctx) == [[5_000_000_005], [6_000_000_005]]
    assert _values("frame.time_delta", ctx) == [[500_000_005], [1_000_000_000]]
    assert _values("frame.interface_id", ctx) == [[], []]  # pcap files have no interface ids
    assert _values("frame.interface_id", ChunkContext(buf, table, capture_format="pcapng")) == [[0], [0]]


def test_multi_occurrence_fields_give_one_occurrence_per_position():
    eth = bytes.fromhex("0200000000020200000000010800")
    buf, table = chunk([eth + bytes(40), eth + bytes(40)])
    tcp_row(table, 0, src=0x0A000001, dst=0x0A000002, sport=40000, dport=80, flags=0x02)
    ctx = ChunkContext(buf, table)
    assert _values("ip.addr", ctx) == [[0x0A000001, 0x0A000002], []]
    assert _values("tcp.port", ctx) == [[40000, 80], []]
    assert _values("tcp.flags.syn", ctx) == [[1], []]
    assert _values("tcp.flags.ack", ctx) == [[0], []]
    assert _values("eth.type", ctx) == [[0x0800], [0x0800]]
    assert _values("eth.addr", ctx) == [[0, 0], [0, 0]]  # the table's MAC columns were left empty


def test_fields_exist_only_where_their_bytes_were_captured():
    eth = bytes.fromhex("0200000000020200000000010800")
    buf, table = chunk([eth + bytes(20) + bytes(6)])  # IPv4 + 6 bytes of TCP: ports, no flags
    tcp_row(table, 0, src=1, dst=2, sport=1234, dport=80, flags=0, hlen=0)
    table["wirelen"][0] = 100
    table["ip_len"][0], table["l4_len"][0] = 86, 66  # lengths by the IP header, beyond the snapshot
    ctx = ChunkContext(buf, table)
    assert _values("tcp.srcport", ctx) == [[1234]]
    assert _values("tcp.flags", ctx) == [[]]
    assert _values("tcp.len", ctx) == [[]]


def test_icmp_error_quotes_a_second_ip_and_a_tcp_layer():
    ip_outer = bytes.fromhex("4500003800000000400100000a0000090a000001")
    icmp = bytes.fromhex("0303000000000000")
    ip_inner = bytes.fromhex("45000028000100004006000 00a0000010a000002".replace(" ", ""))
    tcp_inner = bytes.fromhex("9c4a1f90000000010000000050022000")
    frame = bytes.fromhex("0200000000010200000000020800") + ip_outer + icmp + ip_inner + tcp_inner
    buf, table = chunk([frame])
    r = table[0]
    r["ipv"], r["eth_type"], r["l3_off"], r["l4_off"], r["ip_proto"], r["ip_hl"] = 4, 0x0800, 14, 34, 1, 20
    r["src_lo"], r["dst_lo"], r["icmp_type"], r["icmp_code"], r["l4_len"] = 0x0A000009, 0x0A000001, 3, 3, 44
    r["status"] = ST_ICMP_ERROR
    r["q_ipv"], r["q_proto"], r["q_src_lo"], r["q_dst_lo"], r["q_sport"], r["q_dport"] = \
        4, 6, 0x0A000001, 0x0A000002, 40010, 8080
    ctx = ChunkContext(buf, table)
    assert _values("ip.src", ctx) == [[0x0A000009, 0x0A000001]]
    assert _values("ip.ttl", ctx) == [[0, 64]]  # the main header's TTL column was left 0; the quoted one is read
    assert _values("tcp.srcport", ctx) == [[40010]]
    assert _values("tcp.flags", ctx) == [[0x002]]
    assert _values("icmp.type", ctx) == [[3]]
    layers = lookup("ip.src").extract(ctx)
    assert [int(np.broadcast_to(o.layer, (1,))[0]) for o in layers] == [1, 2]


def test_vlan_tags_and_802_1ad_are_separate_fields():
    qinq = bytes.fromhex("020000000002020000000001" "88a8" "012c" "8100" "00c8" "0800") + bytes(20)
    dot1q = bytes.fromhex("020000000002020000000001" "8100" "0064" "8100" "00c8" "0800") + bytes(20)
    buf, table = chunk([qinq, dot1q])
    ctx = ChunkContext(buf, table)
    assert _values("vlan.id", ctx) == [[200], [100, 200]]
    assert _values("ieee8021ad.id", ctx) == [[300], []]
    assert _values("eth.type", ctx) == [[0x88A8], [0x8100]]


def test_ieee_802_3_frames_have_no_ethertype():
    llc = bytes.fromhex("0180c2000000020000000001" "0026" "424203") + bytes(40)
    buf, table = chunk([llc])
    assert _values("eth.type", ChunkContext(buf, table)) == [[]]


def test_the_reference_is_generated_from_the_registry():
    from diagnose.fields.reference import reference_markdown, reference_rows

    rows = reference_rows()
    assert [r["name"] for r in rows] == [f.name for f in all_fields()]
    text = reference_markdown()
    assert "| `tcp.flags.syn` | bool | SYN flag |" in text
    assert text.count("\n") == len(rows) + 2
