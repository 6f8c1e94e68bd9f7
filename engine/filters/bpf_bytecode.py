"""Compile a capture filter (bpf_ir) to classic BPF: the program a kernel runs for live capture.

Printed like `tcpdump -d` (libpcap's bpf_image), `-dd` (C array) and `-ddd` (decimal). The code is not
libpcap's instruction for instruction (libpcap's optimizer is its own), but it accepts exactly the same packets:
tests run both programs through a BPF interpreter on every corpus packet.

Short-circuit evaluation maps onto jumps: `and`/`or`/`not` only choose jump targets, and a load outside the packet
makes the machine return 0, which is the "abort" of bpf_eval.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnose.filters import bpf_ir as ir

# instruction classes, sizes, modes, operations (linux/filter.h, pcap/bpf.h)
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, \
    0xA0
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X = 0x00, 0x08
RET_A = 0x10
TAX, TXA = 0x00, 0x80
MEMWORDS = 16

_SIZE = {1: B, 2: H, 4: W}
_ALU = {"+": ADD, "-": SUB, "*": MUL, "/": DIV, "|": OR, "&": AND, "<<": LSH, ">>": RSH, "%": MOD, "^": XOR}
_JUMP = {"eq": JEQ, "gt": JGT, "ge": JGE, "set": JSET}


@dataclass(frozen=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int


class BytecodeError(ValueError):
    """The filter needs more than the BPF machine offers (scratch memory)."""


class _Label:
    def __init__(self):
        self.incoming: list[tuple] = []  # register contents (A, X) at each jump to this label


@dataclass
class _Pending:
    """An instruction whose jump targets are labels until layout."""

    code: int
    k: int = 0
    true: _Label | None = None
    false: _Label | None = None
    target: _Label | None = None  # for ja


def compile_program(pred: ir.Pred, accept: int = 262144) -> list[Insn]:
    gen = _Generator()
    accept_label, reject_label = _Label(), _Label()
    gen.pred(pred, accept_label, reject_label)
    gen.place(accept_label)
    gen.emit(RET | K, accept)
    gen.place(reject_label)
    gen.emit(RET | K, 0)
    return gen.layout()


class _Generator:
    """Emits code with symbolic jump targets. It remembers what the A and X registers hold (an IR value) so a value
    already loaded on every path into a point is not loaded again; all jumps go forward, so when a label is placed
    every path into it is known."""

    def __init__(self):
        self.items: list[_Pending | _Label] = []
        self.scratch = 0
        self.a: ir.Value | None = None
        self.x: ir.Value | None = None
        self.reachable = True

    def emit(self, code: int, k: int = 0) -> None:
        self.items.append(_Pending(code, k & 0xFFFFFFFF))
        if code & 0x07 == RET:
            self.reachable = False

    def place(self, label: _Label) -> None:
        self.items.append(label)
        states = list(label.incoming) + ([(self.a, self.x)] if self.reachable else [])
        self.a = states[0][0] if states and all(a == states[0][0] for a, _ in states) else None
        self.x = states[0][1] if states and all(x == states[0][1] for _, x in states) else None
        self.reachable = True

    def jump(self, code: int, k: int, true: _Label, false: _Label) -> None:
        self.items.append(_Pending(code, k & 0xFFFFFFFF, true, false))
        true.incoming.append((self.a, self.x))
        false.incoming.append((self.a, self.x))

    def goto(self, target: _Label) -> None:
        self.items.append(_Pending(JMP | JA, 0, target=target))
        target.incoming.append((self.a, self.x))
        self.reachable = False

    # ---- predicates ----------------------------------------------------------------------------------------------
    def pred(self, p: ir.Pred, true: _Label, false: _Label) -> None:
        if isinstance(p, ir.Bool):
            self.goto(true if p.value else false)
        elif isinstance(p, ir.Not):
            self.pred(p.operand, false, true)
        elif isinstance(p, ir.And):
            middle = _Label()
            self.pred(p.left, middle, false)
            self.place(middle)
            self.pred(p.right, true, false)
        elif isinstance(p, ir.Or):
            middle = _Label()
            self.pred(p.left, true, middle)
            self.place(middle)
            self.pred(p.right, true, false)
        elif isinstance(p, ir.ProtoChain):
            self.protochain(p, true, false)
        elif isinstance(p, ir.Test):
            left = p.left
            if p.op == "eq" and p.right == ir.Const(0) and isinstance(left, ir.BinOp) and left.op == "&" and \
                    isinstance(left.right, ir.Const):
                # (x & m) == 0 is a bit test with the targets swapped: libpcap's jset
                self.value(left.left)
                self.jump(JMP | JSET | K, left.right.value, false, true)
            elif isinstance(p.right, ir.Const):
                self.value(p.left)
                self.jump(JMP | _JUMP[p.op] | K, p.right.value, true, false)
            else:
                slot = self.save(p.right)
                self.value(p.left)
                self.emit(LDX | MEM, slot)
                self.x = None
                self.release()
                self.jump(JMP | _JUMP[p.op] | X, 0, true, false)
        else:
            raise TypeError(p)

    def protochain(self, p: ir.ProtoChain, true: _Label, false: _Label) -> None:
        """An unrolled walk over extension headers (classic BPF has no backward jumps): X holds the offset of the
        current header from the network layer, A the protocol number that announced it."""
        if p.version == 4:
            self.emit(LDX | MSH | B, p.nl)
            self.emit(LD | B | ABS, p.nl + 9)
        else:
            self.emit(LDX | IMM, 40)
            self.emit(LD | B | ABS, p.nl + 6)
        step_slot, next_slot = self.scratch, self.scratch + 1
        if next_slot >= MEMWORDS:
            raise BytecodeError("expression too complex for the BPF machine's 16 scratch words")
        for _ in range(ir.MAX_CHAIN):
            chained, ah, step, not_found = _Label(), _Label(), _Label(), _Label()
            self.jump(JMP | JEQ | K, p.proto, true, not_found)
            self.place(not_found)
            for value in ir.CHAINED:
                after = _Label()
                self.jump(JMP | JEQ | K, value, chained, after)
                self.place(after)
            self.jump(JMP | JEQ | K, ir.IPPROTO_AH, ah, false)
            self.place(chained)  # an IPv6 extension header is (length + 1) * 8 bytes
            self.emit(LD | B | IND, p.nl + 1)
            self.emit(ALU | ADD | K, 1)
            self.emit(ALU | MUL | K, 8)
            self.goto(step)
            self.place(ah)  # an AH header is (length + 2) * 4 bytes
            self.emit(LD | B | IND, p.nl + 1)
            self.emit(ALU | ADD | K, 2)
            self.emit(ALU | MUL | K, 4)
            self.place(step)
            self.emit(ST, step_slot)
            self.emit(LD | B | IND, p.nl)  # the protocol after this header
            self.emit(ST, next_slot)
            self.emit(MISC | TXA)
            self.emit(LDX | MEM, step_slot)
            self.emit(ALU | ADD | X)
            self.emit(MISC | TAX)
            self.emit(LD | MEM, next_slot)
        self.a = self.x = None
        self.goto(false)

    # ---- values into the accumulator -----------------------------------------------------------------------------
    def value(self, v: ir.Value) -> None:
        if self.a == v:
            return
        self._value(v)
        self.a = v

    def _value(self, v: ir.Value) -> None:
        if isinstance(v, ir.Const):
            self.emit(LD | IMM, v.value)
        elif isinstance(v, ir.PacketLength):
            self.emit(LD | W | LEN)
        elif isinstance(v, ir.IpHeaderLength):
            self.header_length_to_x(v)
            self.emit(MISC | TXA)
        elif isinstance(v, ir.Load):
            self.load(v)
        elif isinstance(v, ir.Neg):
            self.value(v.operand)
            self.emit(ALU | NEG)
        elif isinstance(v, ir.BinOp):
            if isinstance(v.right, ir.Const):
                self.value(v.left)
                self.emit(ALU | _ALU[v.op] | K, v.right.value)
            else:
                slot = self.save(v.right)
                self.value(v.left)
                self.emit(LDX | MEM, slot)
                self.x = None
                self.release()
                self.emit(ALU | _ALU[v.op] | X)
        else:
            raise TypeError(v)

    def load(self, v: ir.Load) -> None:
        size = _SIZE[v.size]
        offset = v.offset
        if isinstance(offset, ir.Const):
            self.emit(LD | size | ABS, offset.value)
            return
        # X + constant: the IPv4 header length idiom, or any computed offset moved into X
        base, extra = offset, 0
        if isinstance(offset, ir.BinOp) and offset.op == "+" and isinstance(offset.right, ir.Const):
            base, extra = offset.left, offset.right.value
        if isinstance(base, ir.IpHeaderLength):
            self.header_length_to_x(base)
        elif self.x != base:
            self.value(base)
            self.emit(MISC | TAX)
            self.x = base
        self.emit(LD | size | IND, extra)

    def header_length_to_x(self, v: ir.IpHeaderLength) -> None:
        if self.x != v:
            self.emit(LDX | MSH | B, v.offset)
            self.x = v

    def save(self, v: ir.Value) -> int:
        """Compute v and keep it in the next scratch memory word."""
        self.value(v)
        if self.scratch >= MEMWORDS:
            raise BytecodeError("expression too complex for the BPF machine's 16 scratch words")
        slot = self.scratch
        self.scratch += 1
        self.emit(ST, slot)
        return slot

    def release(self) -> None:
        self.scratch -= 1

    # ---- layout: labels to relative jumps (conditional jumps reach at most 255 ahead) -----------------------------
    def layout(self) -> list[Insn]:
        long_jumps: set[int] = set()
        while True:
            positions: dict[int, int] = {}
            pc = 0
            for index, item in enumerate(self.items):
                if isinstance(item, _Label):
                    positions[id(item)] = pc
                else:
                    pc += 3 if index in long_jumps else 1
            program: list[Insn] = []
            overflow = False
            for index, item in enumerate(self.items):
                if isinstance(item, _Label):
                    continue
                here = len(program)
                if item.target is not None:
                    program.append(Insn(item.code, 0, 0, positions[id(item.target)] - here - 1))
                elif item.true is not None:
                    if index in long_jumps:  # jcc to two `ja`s right after it
                        program.append(Insn(item.code, 0, 1, item.k))
                        program.append(Insn(JMP | JA, 0, 0, positions[id(item.true)] - here - 2))
                        program.append(Insn(JMP | JA, 0, 0, positions[id(item.false)] - here - 3))
                        continue
                    jt = positions[id(item.true)] - here - 1
                    jf = positions[id(item.false)] - here - 1
                    if jt > 255 or jf > 255:
                        long_jumps.add(index)
                        overflow = True
                    program.append(Insn(item.code, jt, jf, item.k))
                else:
                    program.append(Insn(item.code, 0, 0, item.k))
            if not overflow:
                return program


# ---- printing ----------------------------------------------------------------------------------------------------

_OPERATORS = {ADD: "add", SUB: "sub", MUL: "mul", DIV: "div", OR: "or", AND: "and", LSH: "lsh", RSH: "rsh",
              MOD: "mod", XOR: "xor"}
_HEX_ALU = {AND, OR, XOR}
_JUMPS = {JEQ: "jeq", JGT: "jgt", JGE: "jge", JSET: "jset"}


def image(insn: Insn, n: int) -> str:
    """One instruction as `tcpdump -d` prints it."""
    code, k = insn.code, insn.k
    cls = code & 0x07
    op, operand = "unimp", f"0x{code:x}"
    if cls == RET:
        op, operand = "ret", ("a" if code & RET_A else f"#{k}")
    elif cls == LD:
        mode, size = code & 0xE0, code & 0x18
        name = {W: "ld", H: "ldh", B: "ldb"}[size]
        if mode == ABS:
            op, operand = name, f"[{k}]"
        elif mode == IND:
            op, operand = name, f"[x + {k}]"
        elif mode == LEN:
            op, operand = "ld", "#pktlen"
        elif mode == IMM:
            op, operand = "ld", f"#0x{k:x}"
        elif mode == MEM:
            op, operand = "ld", f"M[{k}]"
    elif cls == LDX:
        mode = code & 0xE0
        if mode == MSH:
            op, operand = "ldxb", f"4*([{k}]&0xf)"
        elif mode == IMM:
            op, operand = "ldx", f"#0x{k:x}"
        elif mode == MEM:
            op, operand = "ldx", f"M[{k}]"
        elif mode == LEN:
            op, operand = "ldx", "#pktlen"
    elif cls == ST:
        op, operand = "st", f"M[{k}]"
    elif cls == STX:
        op, operand = "stx", f"M[{k}]"
    elif cls == ALU:
        alu = code & 0xF0
        if alu == NEG:
            op, operand = "neg", ""
        else:
            op = _OPERATORS[alu]
            if code & X:
                operand = "x"
            else:
                operand = f"#0x{k:x}" if alu in _HEX_ALU else f"#{k}"
    elif cls == JMP:
        jop = code & 0xF0
        if jop == JA:
            op, operand = "ja", f"{n + 1 + k}"
        else:
            op = _JUMPS[jop]
            operand = "x" if code & X else f"#0x{k:x}"
            return f"({n:03d}) {op:<8} {operand:<16} jt {n + 1 + insn.jt}\tjf {n + 1 + insn.jf}"
    elif cls == MISC:
        op, operand = ("tax", "") if (code & 0xF8) == TAX else ("txa", "")
    return f"({n:03d}) {op:<8} {operand}"


def dump(program: list[Insn], style: str = "d") -> str:
    """`tcpdump -d` (style d), `-dd` (C initialisers) or `-ddd` (decimal numbers) output."""
    if style == "d":
        return "\n".join(image(insn, n) for n, insn in enumerate(program))
    if style == "dd":
        return "\n".join(f"{{ 0x{i.code:x}, {i.jt}, {i.jf}, 0x{i.k:08x} }}," for i in program)
    if style == "ddd":
        return "\n".join([str(len(program))] + [f"{i.code} {i.jt} {i.jf} {i.k}" for i in program])
    raise ValueError(f"unknown dump style {style!r}")
