"""Every field of engine/fields, per packet, against tshark's values (stored fixtures, tests/data/fixtures/tshark/).

For each capture under tests/data/{lab,corpus,corpus-zeek}, each field tshark printed that the registry's core
modules define is extracted from the decoded chunks and compared occurrence by occurrence (order aside: tshark
lists layers in its own order). Differences that come from other stages are listed with their reason.
"""

from __future__ import annotations

import ipaddress
from decimal import Decimal

import numpy as np
import pytest

from diagnose.errors import CaptureError
from diagnose.fields import FieldType as T, iter_contexts, lookup
from diagnose.pipeline import open_pass
from oracles.fixtures import capture_files, data_path, field_occurrences, load_tshark

# (capture, field): why we differ. All come from stages this module reads from.
KNOWN_DIFFERENCES = {
    ("corpus/zeek/ip4-trunc.pcap", "*"): "IPv4 header cut after 6 bytes: the decoder records no network layer",
    ("corpus/zeek/linux_dlt_sll2.pcap", "arp.opcode"): "RARP (0x8035) is not decoded",
    ("corpus-zeek/cisco-fabric-path.pcap", "*"): "Cisco FabricPath encapsulation is not decoded",
    ("corpus-zeek/gtp2_different_udp_port.pcap", "*"): "GTP-U tunnels are not decoded (inner IP and outer UDP)",
    ("corpus-zeek/Teredo.pcap", "udp.stream"): "the flow table numbers the inner flow, tshark the outer UDP",
}


def _ours(ftype, occurrence, row):
    value = occurrence.values[row]
    if ftype == T.IPV6:
        return (int(value[0]) << 64) | int(value[1])
    return int(value)


def _theirs(ftype, text: str):
    if ftype in (T.UINT, T.INT, T.BOOL):
        return int(text, 0)
    if ftype == T.IPV4:
        return int(ipaddress.IPv4Address(text))
    if ftype == T.IPV6:
        return int(ipaddress.IPv6Address(text))
    if ftype == T.ETHER:
        return int(text.replace(":", ""), 16)
    return int(Decimal(text) * 1_000_000_000)  # times


def _core(name: str) -> bool:
    found = lookup(name)
    return found is not None and found.type != T.NONE and found.extractor.__module__.startswith("diagnose.fields.")


CAPTURES = [c for c in capture_files() if "badmagic" not in c[1]]


@pytest.mark.parametrize("group,name", CAPTURES, ids=[f"{g}/{n}" for g, n in CAPTURES])
def test_fields_equal_tshark_per_packet(group, name):
    key = f"{group}/{name}"
    if (key, "*") in KNOWN_DIFFERENCES:
        return
    fixture = load_tshark(group, name)
    fields = [f for f in fixture["packets"]["fields"] if _core(f) and (key, f) not in KNOWN_DIFFERENCES]
    expected = {f: field_occurrences(fixture, f) for f in fields}
    got: dict[str, list] = {f: [] for f in fields}
    run = open_pass(str(data_path(group, name)))
    try:
        for ctx in iter_contexts(run.chunks(), capture_format=run.capture.info.format):
            for f in fields:
                found = lookup(f)
                occurrences = found.extract(ctx)
                present = np.array([o.present for o in occurrences]) if occurrences else np.zeros((0, ctx.n), bool)
                for row in range(ctx.n):
                    got[f].append(sorted(_ours(found.type, occurrences[k], row)
                                         for k in np.nonzero(present[:, row])[0]))
    except CaptureError:
        pass  # a damaged file: tshark's rows stop at the same record
    differences = []
    for f in fields:
        ftype = lookup(f).type
        rows = min(len(expected[f]), len(got[f]))
        for row in range(rows):
            theirs = sorted(_theirs(ftype, text) for text in expected[f][row])
            if theirs != got[f][row]:
                differences.append(f"frame {row + 1} {f}: tshark {theirs}, ours {got[f][row]}")
    assert not differences, f"{key}: {len(differences)} differences\n" + "\n".join(differences[:20])
