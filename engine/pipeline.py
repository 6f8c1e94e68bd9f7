"""The streaming pass: read a chunk, decode it, assign flows, hand it on. One place wires the stages together.

`Pass` is the core (read + decode + flows). `FilterContexts` adds what display filters may read: the TCP analysis
(tcp.analysis.*, relative sequence numbers, ...) and the application layer (dns.*, http.*, tls.*), each run only
when a filter uses one of its fields.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from diagnose.capture import Capture, Chunk, open_capture
from diagnose.flows import FlowTable


@dataclass
class Pass:
    """One read of a capture: iterate `chunks()`; `flows` and `capture.info` are complete afterwards."""

    capture: Capture
    flows: FlowTable = field(default_factory=FlowTable)

    def chunks(self, prepare: Callable[[Chunk], None] | None = None) -> Iterator[Chunk]:
        """Decoded chunks with their flows assigned. Reading and decoding run one chunk ahead on a worker thread
        (diagnose.ahead), and so does `prepare`: per-chunk work that reads only the chunk (a kernel that drops the
        GIL, such as hashing frames), which may leave its results in chunk.extra. Flow assignment stays here,
        since analyses read the flow table as it grows."""
        from diagnose.ahead import run_ahead

        for chunk in run_ahead(lambda: self._decoded(prepare)):
            self.flows.update(chunk.table, chunk.buf)
            yield chunk

    def _decoded(self, prepare: Callable[[Chunk], None] | None) -> Iterator[Chunk]:
        from diagnose.decode import FragmentReassembler, decode_chunk

        reassembler = FragmentReassembler()
        for chunk in self.capture.chunks(held=1):
            chunk.buf = decode_chunk(chunk.buf, chunk.table, reassembler)
            if prepare is not None:
                prepare(chunk)
            yield chunk


def open_pass(path: str, **kwargs) -> Pass:
    return Pass(open_capture(path, **kwargs))


def analyses_for(fields: Iterable[str]) -> set[str]:
    """Which analyses ("tcp", "app") the given display-filter fields need, judged by the module that provides them."""
    from diagnose.fields import lookup

    needed = set()
    for name in fields:
        module = getattr(lookup(name).extractor, "__module__", "") or ""
        if module.startswith("diagnose.tcp"):
            needed.add("tcp")
        elif module.startswith("diagnose.protocols"):
            needed.update(("tcp", "app"))
    return needed


class FilterContexts:
    """Chunk contexts for filters over one pass, with the analyses `needs` names attached."""

    def __init__(self, run: Pass, needs: set[str], *, keylogs: Iterable[str] = ()):
        self.run = run
        self.tcp = self.app = self.keylog = None
        if "tcp" in needs:
            from diagnose.tcp.analysis import TcpAnalyzer

            self.tcp = TcpAnalyzer(run.flows)
        if "app" in needs:
            from diagnose.keylog import KeyLog
            from diagnose.protocols.app import AppLayer
            from diagnose.protocols.tls_decrypt import KeyLogDecryption

            self.keylog = KeyLog.load(list(keylogs))
            self.app = AppLayer(decryptor_factory=KeyLogDecryption(self.keylog))

    def __iter__(self):
        from diagnose.fields import ChunkContext
        from diagnose.tcp import fields as tcp_fields

        info = self.run.capture.info
        first_ts = prev_ts = None
        secrets_seen = 0
        for chunk in self.run.chunks():
            table = chunk.table
            if not table.shape[0]:
                continue
            if self.keylog is not None and len(info.secrets) > secrets_seen:
                self.keylog.add_secrets(info.secrets[secrets_seen:])  # secrets blocks come before their packets
                secrets_seen = len(info.secrets)
            first_ts = int(table["ts"][0]) if first_ts is None else first_ts
            ctx = ChunkContext(chunk.buf, table, first_ts=first_ts, prev_ts=prev_ts, file_big_endian=info.big_endian,
                               capture_format=info.format)
            if self.tcp is not None:
                tcp_fields.attach(ctx, self.tcp.update(table, chunk.buf))
            if self.app is not None:
                ctx.extra["app"] = self.app.update(chunk.buf, table, self.run.flows.conversations)
            prev_ts = int(table["ts"][-1])
            yield chunk, ctx
