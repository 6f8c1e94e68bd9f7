"""The streaming pass: read a chunk, decode it, assign flows, hand it on. One place wires the stages together."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from diagnose.capture import Capture, Chunk, open_capture
from diagnose.flows import FlowTable


@dataclass
class Pass:
    """One read of a capture: iterate `chunks()`; `flows` and `capture.info` are complete afterwards."""

    capture: Capture
    flows: FlowTable = field(default_factory=FlowTable)

    def chunks(self) -> Iterator[Chunk]:
        from diagnose.decode import FragmentReassembler, decode_chunk

        reassembler = FragmentReassembler()
        for chunk in self.capture.chunks():
            chunk.buf = decode_chunk(chunk.buf, chunk.table, reassembler)
            self.flows.update(chunk.table, chunk.buf)
            yield chunk


def open_pass(path: str, **kwargs) -> Pass:
    return Pass(open_capture(path, **kwargs))
