"""tcp.stream and udp.stream of every packet equal tshark's, for every capture with a stored tshark fixture."""

from __future__ import annotations

import numpy as np
import pytest

from oracles.fixtures import capture_files, data_path, load_tshark, packet_columns, tshark_fixture_path
from diagnose.capture import open_capture  # noqa: F401 (reader must import cleanly first)
from diagnose.errors import CaptureError
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

# Cells tshark fills with several values where we keep one (the innermost layer): listed, with the reason.
# (group, name) -> reason
MULTI_VALUE_REASON = "tunnelled packet: tshark numbers the outer and the inner flow, we track the inner one"


def our_streams(path):
    tcp, udp = [], []
    run = open_pass(str(path))
    with run.capture:
        for chunk in run.chunks():
            t = chunk.table
            is_tcp = ((t["ip_proto"] == 6) | (t["q_proto"] == 6)) & (t["stream"] >= 0)
            is_udp = ((t["ip_proto"] == 17) | (t["q_proto"] == 17)) & (t["stream"] >= 0)
            tcp += np.where(is_tcp, t["stream"], -1).tolist()
            udp += np.where(is_udp, t["stream"], -1).tolist()
    return tcp, udp


def cell(v: int) -> str:
    return "" if v < 0 else str(v)


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
            if "," in theirs:
                if cell(ours) not in theirs.split(","):
                    mismatches.append((i + 1, field, cell(ours), theirs))
                continue
            if theirs != cell(ours):
                mismatches.append((i + 1, field, cell(ours), theirs))
    assert not mismatches, f"(frame, field, ours, tshark): {mismatches[:10]}"
