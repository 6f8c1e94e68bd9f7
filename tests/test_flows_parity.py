"""tcp.stream and udp.stream of every packet equal tshark's, for every capture with a stored tshark fixture."""

from __future__ import annotations

import numpy as np
import pytest

from oracles.fixtures import capture_files, data_path, load_tshark, packet_columns, tshark_fixture_path
from diagnose.capture import open_capture  # noqa: F401 (reader must import cleanly first)
from diagnose.errors import CaptureError
from diagnose.packet import ST_ICMP_ERROR
from diagnose.pipeline import open_pass


def _with_fixture():
    out = []
    for group, name in capture_files():
        try:
            tshark_fixture_path(group, name)
        except FileNotFoundError:
            continue
        out.append((group, name))
    return out


CAPTURES = _with_fixture()

# Intentional differences: (group, name) -> (which frames, by tshark's own view of them; reason). Each must still
# occur (test below), so a fix upstream or here shows up.
KNOWN_DIFFERENCES = {
    ("corpus-zeek", "cisco-fabric-path.pcap"): (
        lambda cols, i: cols["frame.protocols"][i].startswith("eth:cfp:") and cols["frame.protocols"][i].endswith(":udp"),
        "tshark decodes the UDP header inside Cisco FabricPath (udp.length is shown) but gives those datagrams no "
        "udp.stream; we count them in their conversation like the untagged copies of the same datagrams",
    ),
}


def our_streams(path):
    """Per frame: the tcp.stream values and the udp.stream values (outer tunnel flow first, as tshark lists them)."""
    tcp, udp = [], []
    run = open_pass(str(path))
    with run.capture:
        for chunk in run.chunks():
            for r in chunk.table:
                proto = r["q_proto"] if r["status"] & ST_ICMP_ERROR else r["ip_proto"]
                inner = [int(r["stream"])] if r["stream"] >= 0 else []
                outer = [int(r["outer_stream"])] if r["outer_stream"] >= 0 else []
                tcp.append(inner if proto == 6 else [])
                udp.append(outer + (inner if proto == 17 else []))
    return tcp, udp


def cell(values: list[int]) -> str:
    return ",".join(map(str, values))


@pytest.mark.parametrize("group,name", CAPTURES, ids=[f"{g}/{n}" for g, n in CAPTURES])
def test_stream_indices_equal_tshark(group, name):
    fixture = load_tshark(group, name)
    cols = packet_columns(fixture)
    try:
        tcp, udp = our_streams(data_path(group, name))
    except CaptureError:
        assert fixture.get("packets_count", len(cols["frame.number"])) == 0 or fixture.get("error")
        return
    n = min(len(tcp), len(cols["frame.number"]))
    mismatches = []
    for i in range(n):
        for field, ours in (("tcp.stream", tcp[i]), ("udp.stream", udp[i])):
            theirs = cols[field][i]
            if (group, name) in KNOWN_DIFFERENCES and KNOWN_DIFFERENCES[(group, name)][0](cols, i):
                continue
            if theirs != cell(ours):
                mismatches.append((i + 1, field, cell(ours), theirs))
    assert not mismatches, f"(frame, field, ours, tshark): {mismatches[:10]}"


@pytest.mark.parametrize("key", sorted(KNOWN_DIFFERENCES), ids=lambda k: f"{k[0]}/{k[1]}")
def test_known_differences_still_differ(key):
    group, name = key
    selects, _reason = KNOWN_DIFFERENCES[key]
    cols = packet_columns(load_tshark(group, name))
    tcp, udp = our_streams(data_path(group, name))
    frames = {i + 1 for i in range(len(tcp)) if selects(cols, i)}
    assert frames
    differing = {i + 1 for i in range(len(tcp))
                 if cols["tcp.stream"][i] != cell(tcp[i]) or cols["udp.stream"][i] != cell(udp[i])}
    assert differing == frames
