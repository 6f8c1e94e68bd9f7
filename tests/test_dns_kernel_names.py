"""The DNS kernel reads the first question's name of the messages the flow facts keep (error responses, queries
left unanswered) as app._first_qname reads it in Python: every kind of name (escaped bytes, the root, compression
pointers, loops, cut names, no question, no room for the type) gives the same name or None, also when the kernel's
name buffer is full and Python reads the rest."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from scapy.all import IP, UDP, Ether, Raw, wrpcap

from diagnose.pipeline import open_pass
from diagnose.protocols.app import AppLayer, _first_qname


def label_name(*labels: bytes) -> bytes:
    return b"".join(bytes([len(label)]) + label for label in labels) + b"\0"


QUESTIONS = [
    label_name(b"www", b"example", b"com") + b"\0\1\0\1",
    label_name(b"we-ird_", b"a b", b"\x00\x7f\xff.") + b"\0\1\0\1",  # escaped bytes, a dot inside a label
    b"\0\0\1\0\1",  # the root
    b"\xc0\x0c\0\1\0\1",  # a pointer to itself: a loop
    b"\xc0\x12\0\1\0\1" + label_name(b"after"),  # a pointer forward to a name written after the question
    label_name(b"cut", b"off")[:-3],  # runs past the end of the message
    label_name(b"no", b"type"),  # no room for the type and class
    label_name(*[b"x"] * 130) + b"\0\1\0\1",  # too many labels
    b"\x40abc\0\0\1\0\1",  # an unsupported label type
    label_name(b"a" * 63, b"b" * 63, b"c" * 63) + b"\0\1\0\1",
]


def messages():
    out = []
    for k, question in enumerate(QUESTIONS):
        out.append(struct.pack(">6H", 0x100 + k, 0x0100, 1, 0, 0, 0) + question)  # a query never answered
        out.append(struct.pack(">6H", 0x200 + k, 0x8183, 1, 0, 0, 0) + question)  # an NXDOMAIN answer
    out.append(struct.pack(">6H", 0x300, 0x0100, 0, 0, 0, 0))  # no question
    out.append(struct.pack(">6H", 0x301, 0x8182, 0, 0, 0, 0) + b"\3abc\0\0\1\0\1")  # qdcount 0 says no question
    return out


@pytest.fixture
def capture(tmp_path):
    packets = []
    for k, payload in enumerate(messages()):
        p = Ether() / IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=20000 + k, dport=53) / Raw(payload)
        p.time = 100.0 + k / 100
        packets.append(p)
    path = tmp_path / "names.pcap"
    wrpcap(str(path), packets)
    return str(path)


def facts(path: str, name_bytes: int | None) -> tuple[list, list]:
    app = AppLayer(use_system_store=False)
    if name_bytes is not None:
        app._dns_names = np.empty(name_bytes, np.uint8)
    run = open_pass(path)
    with run.capture:
        for chunk in run.chunks():
            app.update(chunk.buf, chunk.table, run.flows.conversations)
    dns = app.finish().dns
    unanswered = sorted(u for c in dns for u in dns[c].unanswered)
    errors = sorted(e for c in dns for e in dns[c].errors_seen)
    return unanswered, errors


@pytest.mark.parametrize("name_bytes", [None, 0, 40])
def test_kernel_names_are_read_as_python_reads_them(capture, name_bytes):
    expected_unanswered, expected_errors = [], []
    for frame, payload in enumerate(messages(), start=1):
        if payload[2] & 0x80:
            expected_errors.append((frame, _first_qname(payload), payload[3] & 0xF))
        else:
            expected_unanswered.append((frame, _first_qname(payload)))
    names = {name for _, name in expected_unanswered}
    assert None in names and "<Root>" in names and "www.example.com" in names and len(names) > 5
    assert facts(capture, name_bytes) == (expected_unanswered, sorted(expected_errors))
