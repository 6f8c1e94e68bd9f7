"""Classic BPF bytecode: our compiled programs against libpcap's own, packet by packet.

libpcap's programs are stored as `tcpdump -ddd` output (tests/data/fixtures/filters/libpcap_programs.json, made by
tests/oracles/make_filter_fixtures.py). A small interpreter (bpf_interpreter.py) runs both programs on every packet
of every corpus capture and of the built captures; their verdicts must agree with each other and with the
vectorised evaluator.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from bpf_interpreter import run
from diagnose.capture import open_capture
from diagnose.errors import CaptureError, FilterError
from diagnose.filters import compile_bpf
from diagnose.filters.bpf_bytecode import MEMWORDS

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "fixtures" / "filters"


@lru_cache(maxsize=1)
def _programs() -> dict[str, dict[str, list[list[int]]]]:
    return json.loads((FIXTURES / "libpcap_programs.json").read_text())["programs"]


@lru_cache(maxsize=1)
def _bpf_cases() -> dict[str, list[str]]:
    cases = json.loads(gzip.decompress((FIXTURES / "cases.json.gz").read_bytes()))["cases"]
    by_capture: dict[str, list[str]] = {}
    for case in cases:
        if case["language"] == "bpf" and not case["capture"].startswith("lab/"):
            by_capture.setdefault(case["capture"], []).append(case["filter"])
    return by_capture


def _packets(capture: str):
    """(linktype, captured bytes, wire length) of every packet (up to a damaged record)."""
    out = []
    try:
        with open_capture(str(DATA / capture)) as cap:
            for chunk in cap.chunks():
                t = chunk.table
                for i in range(t.shape[0]):
                    start = int(t["data"][i])
                    out.append((int(t["linktype"][i]), chunk.buf[start:start + int(t["caplen"][i])].tobytes(),
                                int(t["wirelen"][i])))
    except CaptureError:
        pass
    return out


def _big_endian(capture: str) -> bool:
    return (DATA / capture).read_bytes()[:4] in (bytes.fromhex("a1b2c3d4"), bytes.fromhex("a1b23c4d"))


@pytest.mark.parametrize("capture", sorted(_bpf_cases()))
def test_our_bytecode_accepts_what_libpcaps_accepts(capture):
    packets = _packets(capture)
    order = "big" if _big_endian(capture) else "little"
    compared = 0
    disagreements = []
    for linktype in sorted({p[0] for p in packets}):
        theirs_by_filter = _programs().get(f"{linktype}/{order}", {})
        rows = [p for p in packets if p[0] == linktype]
        if not rows:
            continue
        buf = np.frombuffer(b"".join(p[1] for p in rows), np.uint8).copy()
        table = _table(rows)
        for text in _bpf_cases()[capture]:
            theirs = theirs_by_filter.get(text)
            try:
                program = compile_bpf(text, linktype, big_endian=order == "big")
            except FilterError:
                assert theirs is None, f"{capture}: libpcap compiles {text!r}, we refuse it"
                continue
            if theirs is None:
                continue  # libpcap refused it on this capture (checked by the parity tests)
            ours = [(i.code, i.jt, i.jf, i.k) for i in program.bytecode()]
            evaluator = program.evaluate(buf, table)
            for n, (_, data, wirelen) in enumerate(rows):
                verdicts = (bool(run(theirs, data, wirelen)), bool(run(ours, data, wirelen)), bool(evaluator[n]))
                compared += 1
                if len(set(verdicts)) != 1:
                    disagreements.append(f"{text!r} packet {n + 1}: libpcap/ours/evaluator = {verdicts}")
    assert not disagreements, f"{capture}:\n" + "\n".join(disagreements[:30])
    with_programs = any(_programs().get(f"{linktype}/{order}") for linktype, _, _ in packets)
    assert compared or not with_programs


def _table(rows) -> np.ndarray:
    from diagnose.packet import new_table
    table = new_table(len(rows))
    offset = 0
    for i, (linktype, data, wirelen) in enumerate(rows):
        table[i]["frame"] = i + 1
        table[i]["data"] = offset
        table[i]["caplen"] = len(data)
        table[i]["wirelen"] = wirelen
        table[i]["linktype"] = linktype
        offset += len(data)
    return table


def test_programs_stay_within_the_bpf_machine():
    """Forward jumps only, scratch memory within 16 words, every path ends in a return."""
    texts = {t for filters in _bpf_cases().values() for t in filters}
    checked = 0
    for text in sorted(texts):
        try:
            program = compile_bpf(text, 1).bytecode()
        except FilterError:
            continue
        checked += 1
        for pc, insn in enumerate(program):
            cls = insn.code & 0x07
            if cls == 0x05:
                targets = [insn.k] if insn.code & 0xF0 == 0 else [insn.jt, insn.jf]
                assert all(pc + 1 + t < len(program) for t in targets), (text, pc)
            if cls in (0x02, 0x03) or (cls in (0x00, 0x01) and insn.code & 0xE0 == 0x60):
                assert insn.k < MEMWORDS
        assert program[-1].code & 0x07 == 0x06
    assert checked >= 50


def test_long_programs_use_jump_trampolines():
    text = " or ".join(f"host 10.0.{i}.1" for i in range(40))
    program = compile_bpf(text, 1)
    code = [(i.code, i.jt, i.jf, i.k) for i in program.bytecode()]
    assert len(code) > 256
    frame = bytes.fromhex("0200000000020200000000010800") + bytes.fromhex("450000140000000040000000" "0a002701"
                                                                           "0a000002")
    assert run(code, frame, len(frame)) != 0  # 10.0.39.1 is the last host: reached through the long jumps
    assert run(code, frame[:-8] + bytes(8), len(frame)) == 0
