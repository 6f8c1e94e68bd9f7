"""Capture filters (tcpdump's `-f`/pcap-filter(7) language): compile once, evaluate over chunks, or emit bytecode.

    program = compile_bpf("tcp[tcpflags] & tcp-syn != 0", linktype=1)
    mask = program.evaluate(buf, table)        # rows of one link type
    print(program.dump("d"))                   # like tcpdump -d

    flt = BpfFilter("port 53")                 # any link type: compiled per link type on first use
    mask = flt.evaluate(ctx)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diagnose.errors import FilterError
from diagnose.filters import bpf_ast as ast
from diagnose.filters import bpf_ir as ir
from diagnose.filters.bpf_bytecode import Insn, compile_program, dump
from diagnose.filters.bpf_eval import evaluate as evaluate_ir
from diagnose.filters.bpf_lower import LANGUAGE, Lowering, can_accept
from diagnose.filters.bpf_parser import parse_bpf

DEFAULT_SNAPLEN = 262144


@dataclass
class BpfProgram:
    """A capture filter compiled for one link type."""

    text: str
    linktype: int
    pred: ir.Pred
    snaplen: int = DEFAULT_SNAPLEN
    _bytecode: list[Insn] | None = field(default=None, repr=False)

    def evaluate(self, buf: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Boolean mask of the accepted rows (all rows are taken to be of this program's link type)."""
        return evaluate_ir(self.pred, buf, table)

    def bytecode(self) -> list[Insn]:
        if self._bytecode is None:
            self._bytecode = compile_program(self.pred, self.snaplen)
        return self._bytecode

    def dump(self, style: str = "d") -> str:
        return dump(self.bytecode(), style)


def compile_bpf(text: str, linktype: int = 1, *, snaplen: int = DEFAULT_SNAPLEN,
                big_endian: bool = False) -> BpfProgram:
    """Compile a capture filter for one link type (LINKTYPE_* number); FilterError when it is wrong or, as libpcap
    says, rejects every packet."""
    return _compile_tree(text, parse_bpf(text), linktype, snaplen=snaplen, big_endian=big_endian)


def _compile_tree(text: str, tree: ast.Node, linktype: int, *, snaplen: int, big_endian: bool) -> BpfProgram:
    pred = Lowering(text, linktype, big_endian=big_endian).lower(tree)
    as_libpcap_builds_it = Lowering(text, linktype, big_endian=big_endian, libpcap_shape=True).lower(tree)
    if not can_accept(as_libpcap_builds_it):
        raise FilterError(text, 0, "expression rejects all packets", language=LANGUAGE)
    return BpfProgram(text, linktype, pred, snaplen)


class BpfFilter:
    """A capture filter for a whole capture: parsed once, compiled per link type met in the chunks."""

    def __init__(self, text: str, *, snaplen: int = DEFAULT_SNAPLEN, big_endian: bool = False):
        self.text = text
        self.tree = parse_bpf(text)
        self.snaplen = snaplen
        self.big_endian = big_endian
        self._programs: dict[int, BpfProgram] = {}

    def program(self, linktype: int) -> BpfProgram:
        program = self._programs.get(linktype)
        if program is None:
            program = self._programs[linktype] = _compile_tree(self.text, self.tree, linktype,
                                                               snaplen=self.snaplen, big_endian=self.big_endian)
        return program

    def prepare(self, linktypes) -> None:
        """Compile now for these link types (a capture's interfaces), so a filter libpcap would refuse on them
        fails before any packet is read, even in a capture without packets."""
        for linktype in linktypes:
            self.program(int(linktype))

    def evaluate(self, ctx) -> np.ndarray:
        """Accepted rows of a chunk (anything with .buf and .table)."""
        table = ctx.table
        linktypes = table["linktype"]
        if table.shape[0] == 0:
            return np.zeros(0, bool)
        first = int(linktypes[0])
        if (linktypes == first).all():
            return self.program(first).evaluate(ctx.buf, table)
        mask = np.zeros(table.shape[0], bool)
        for linktype in np.unique(linktypes):
            rows = linktypes == linktype
            mask[rows] = self.program(int(linktype)).evaluate(ctx.buf, table[rows])
        return mask
