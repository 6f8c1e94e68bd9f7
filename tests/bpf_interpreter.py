"""A small classic-BPF interpreter for tests, written from the BPF machine's definition (McCanne & Jacobson 1993,
linux/filter.h): accumulator A, index register X, 16 scratch words, forward jumps only.

It runs both our compiled programs and libpcap's (`tcpdump -ddd` output stored as fixtures) on the same packets, so
the two compilers can be compared without libpcap at test time. A load outside the packet or a division by zero
returns 0 (reject), as the kernel and libpcap's bpf_filter() do.
"""

from __future__ import annotations

MASK = 0xFFFFFFFF


class Reject(Exception):
    pass


def run(program: list[tuple[int, int, int, int]], packet: bytes, wirelen: int) -> int:
    """The program's return value for one packet (0 = reject)."""
    a = x = 0
    mem = [0] * 16
    pc = 0
    n = len(program)
    try:
        while pc < n:
            code, jt, jf, k = program[pc]
            pc += 1
            cls = code & 0x07
            if cls == 0x00 or cls == 0x01:  # LD / LDX
                value = _load(code, k, x, packet, wirelen, mem)
                if cls == 0x00:
                    a = value
                else:
                    x = value
            elif cls == 0x02:  # ST
                mem[k] = a
            elif cls == 0x03:  # STX
                mem[k] = x
            elif cls == 0x04:  # ALU
                a = _alu(code, a, x if code & 0x08 else k)
            elif cls == 0x05:  # JMP
                op = code & 0xF0
                if op == 0x00:
                    pc += k
                    continue
                operand = x if code & 0x08 else k
                taken = {0x10: a == operand, 0x20: a > operand, 0x30: a >= operand, 0x40: (a & operand) != 0}[op]
                pc += jt if taken else jf
            elif cls == 0x06:  # RET
                return (a if code & 0x10 else k) & MASK
            elif cls == 0x07:  # MISC
                if code & 0xF8 == 0x00:
                    x = a
                else:
                    a = x
    except Reject:
        return 0
    return 0


def _load(code: int, k: int, x: int, packet: bytes, wirelen: int, mem: list[int]) -> int:
    mode = code & 0xE0
    size = {0x00: 4, 0x08: 2, 0x10: 1}[code & 0x18]
    if mode == 0x00:  # IMM
        return k & MASK
    if mode == 0x80:  # LEN
        return wirelen & MASK
    if mode == 0x60:  # MEM
        return mem[k]
    if mode == 0xA0:  # MSH: 4 * (P[k] & 0xf)
        if k >= len(packet):
            raise Reject
        return 4 * (packet[k] & 0x0F)
    offset = k if mode == 0x20 else (x + k) & MASK
    if offset + size > len(packet):
        raise Reject
    return int.from_bytes(packet[offset:offset + size], "big")


def _alu(code: int, a: int, operand: int) -> int:
    op = code & 0xF0
    if op == 0x00:
        return (a + operand) & MASK
    if op == 0x10:
        return (a - operand) & MASK
    if op == 0x20:
        return (a * operand) & MASK
    if op == 0x30:
        if operand == 0:
            raise Reject
        return a // operand
    if op == 0x40:
        return a | operand
    if op == 0x50:
        return a & operand
    if op == 0x60:
        return (a << operand) & MASK if operand < 32 else 0
    if op == 0x70:
        return a >> operand if operand < 32 else 0
    if op == 0x80:
        return (-a) & MASK
    if op == 0x90:
        if operand == 0:
            raise Reject
        return a % operand
    if op == 0xA0:
        return a ^ operand
    raise ValueError(f"unknown ALU operation 0x{code:02x}")
