"""Display-filter functions: len, count, lower, upper, string, abs, max, min and the ip_* address helpers.

Each function works on whole-chunk occurrences (see fields.values) and returns occurrences; the type checker asks
`check` whether an argument type is allowed and `result_type` what comes out.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from diagnose.fields import FieldType, Occurrence
from diagnose.fields.values import INTEGER_TYPES, NUMERIC_TYPES
from diagnose.filters import display_bytes as B

T = FieldType


@dataclass(frozen=True)
class FunctionSpec:
    min_args: int
    max_args: int
    allowed: frozenset[FieldType]
    result: FieldType | None  # None: same type as the first argument
    apply: Callable
    needs_field: bool = False
    what: str = ""

    def check(self, ftype: FieldType) -> str | None:
        if ftype in self.allowed:
            return None
        return f"a {ftype} argument is not allowed ({self.what})"

    def result_type(self, first: FieldType) -> FieldType:
        return self.result or first


def _length(ctx, args, types):
    out = []
    for o in args[0]:
        if types[0] == T.STRING:
            values = np.fromiter((len(v.encode("utf-8")) if v is not None else 0 for v in o.values), np.int64,
                                 len(o.values))
        elif types[0] == T.ETHER:
            values = np.full(o.present.shape[0], 6, np.int64)
        elif types[0] == T.IPV4:
            values = np.full(o.present.shape[0], 4, np.int64)
        elif types[0] == T.IPV6:
            values = np.full(o.present.shape[0], 16, np.int64)
        else:
            values = B.length(o.values)
        out.append(Occurrence(values, o.present, o.layer))
    return out


def _count(ctx, args, types):
    total = np.zeros(ctx.n, np.int64)
    for o in args[0]:
        total += o.present
    return [Occurrence(total, np.ones(ctx.n, bool))]


def _case(method: str):
    def apply(ctx, args, types):
        out = []
        for o in args[0]:
            values = np.empty(o.present.shape[0], dtype=object)
            for i in np.nonzero(o.present)[0]:
                values[i] = getattr(o.values[i], method)()
            out.append(Occurrence(values, o.present, o.layer))
        return out
    return apply


def _to_string(ctx, args, types):
    ftype = types[0]
    if ftype == T.STRING:
        return args[0]
    out = []
    for o in args[0]:
        values = np.empty(o.present.shape[0], dtype=object)
        rows = np.nonzero(o.present)[0]
        objects = B.to_objects(o.values, o.present) if ftype in (T.BYTES, T.NONE) else None
        for i in rows:
            values[i] = _format(ftype, o.values, i, objects)
        out.append(Occurrence(values, o.present, o.layer))
    return out


def _format(ftype: FieldType, values, i: int, objects) -> str:
    if ftype in INTEGER_TYPES or ftype == T.FLOAT:
        return str(values[i])
    if ftype == T.IPV4:
        return str(ipaddress.IPv4Address(int(values[i]) & 0xFFFFFFFF))
    if ftype == T.IPV6:
        return str(ipaddress.IPv6Address((int(values[i, 0]) << 64) | int(values[i, 1])))
    if ftype == T.ETHER:
        v = int(values[i])
        return ":".join(f"{(v >> s) & 0xFF:02x}" for s in range(40, -8, -8))
    return ":".join(f"{b:02x}" for b in objects[i])


def _absolute(ctx, args, types):
    return [Occurrence(np.abs(o.values), o.present, o.layer) for o in args[0]]


def _extreme(pick):
    def apply(ctx, args, types):
        best = None
        present = np.zeros(ctx.n, bool)
        for occurrences in args:
            for o in occurrences:
                values = np.asarray(o.values)
                if best is None:
                    best = np.where(o.present, values, 0).astype(values.dtype)
                else:
                    best = np.where(o.present & (~present | pick(values, best)), values, best)
                present |= o.present
        return [Occurrence(best if best is not None else np.zeros(ctx.n), present)]
    return apply


# ---- IP address classes ------------------------------------------------------------------------------------------

_V4 = lambda text: ipaddress.IPv4Network(text)  # noqa: E731
_V6 = lambda text: ipaddress.IPv6Network(text)  # noqa: E731

# IANA special-purpose address registries (name; source, destination, forwardable, globally reachable,
# reserved-by-protocol as the bits 4..0 that ip_special_mask() returns)
SPECIAL_V4 = [
    (_V4("0.0.0.0/8"), "\"This network\"", 0b10000),
    (_V4("10.0.0.0/8"), "Private-Use", 0b11100),
    (_V4("100.64.0.0/10"), "Shared Address Space", 0b11100),
    (_V4("127.0.0.0/8"), "Loopback", 0b00001),
    (_V4("169.254.0.0/16"), "Link Local", 0b11000),
    (_V4("172.16.0.0/12"), "Private-Use", 0b11100),
    (_V4("192.0.0.0/24"), "IETF Protocol Assignments", 0b00000),
    (_V4("192.0.2.0/24"), "Documentation (TEST-NET-1)", 0b00000),
    (_V4("192.88.99.0/24"), "6to4 Relay Anycast", 0b11110),
    (_V4("192.168.0.0/16"), "Private-Use", 0b11100),
    (_V4("198.18.0.0/15"), "Benchmarking", 0b11100),
    (_V4("198.51.100.0/24"), "Documentation (TEST-NET-2)", 0b00000),
    (_V4("203.0.113.0/24"), "Documentation (TEST-NET-3)", 0b00000),
    (_V4("240.0.0.0/4"), "Reserved", 0b00001),
    (_V4("255.255.255.255/32"), "Limited Broadcast", 0b01000),
]
SPECIAL_V6 = [
    (_V6("::1/128"), "Loopback Address", 0b00001),
    (_V6("::/128"), "Unspecified Address", 0b10000),
    (_V6("::ffff:0:0/96"), "IPv4-mapped Address", 0b00000),
    (_V6("64:ff9b::/96"), "IPv4-IPv6 Translat.", 0b11110),
    (_V6("100::/64"), "Discard-Only Address Block", 0b11100),
    (_V6("2001::/23"), "IETF Protocol Assignments", 0b00000),
    (_V6("2001:db8::/32"), "Documentation", 0b00000),
    (_V6("2002::/16"), "6to4", 0b11110),
    (_V6("fc00::/7"), "Unique-Local", 0b11100),
    (_V6("fe80::/10"), "Link-Local Unicast", 0b11000),
]


def _address_class(test4: Callable[[int], bool], test6: Callable[[int], bool]):
    def apply(ctx, args, types):
        ftype = types[0]
        out = []
        for o in args[0]:
            values = np.zeros(o.present.shape[0], bool)
            for i in np.nonzero(o.present)[0]:
                if ftype == T.IPV4:
                    values[i] = test4(int(o.values[i]) & 0xFFFFFFFF)
                else:
                    values[i] = test6((int(o.values[i, 0]) << 64) | int(o.values[i, 1]))
            out.append(Occurrence(values, o.present, o.layer))
        return out
    return apply


def _v4_in(*texts):
    networks = [ipaddress.IPv4Network(t) for t in texts]
    return lambda value: any(ipaddress.IPv4Address(value) in n for n in networks)


def _v6_in(*texts):
    networks = [ipaddress.IPv6Network(t) for t in texts]
    return lambda value: any(ipaddress.IPv6Address(value) in n for n in networks)


def _special(kind: str):
    def lookup(value: int, version: int):
        table = SPECIAL_V4 if version == 4 else SPECIAL_V6
        address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
        best = None
        for network, name, mask in table:
            if address in network and (best is None or network.prefixlen > best[0].prefixlen):
                best = (network, name, mask)
        return best

    def apply(ctx, args, types):
        version = 4 if types[0] == T.IPV4 else 6
        out = []
        for o in args[0]:
            present = o.present.copy()
            values = np.empty(present.shape[0], dtype=object) if kind == "name" else np.zeros(present.shape[0],
                                                                                              np.int64)
            for i in np.nonzero(o.present)[0]:
                value = int(o.values[i]) & 0xFFFFFFFF if version == 4 else \
                    (int(o.values[i, 0]) << 64) | int(o.values[i, 1])
                found = lookup(value, version)
                if found is None:
                    present[i] = False
                else:
                    values[i] = found[1] if kind == "name" else found[2]
            out.append(Occurrence(values, present, o.layer))
        return out
    return apply


_SIZED = frozenset({T.STRING, T.BYTES, T.NONE, T.ETHER, T.IPV4, T.IPV6})
_ADDRESSES = frozenset({T.IPV4, T.IPV6})
_STRINGABLE = frozenset({T.UINT, T.INT, T.FLOAT, T.IPV4, T.IPV6, T.ETHER, T.BYTES, T.NONE, T.STRING})

FUNCTIONS: dict[str, FunctionSpec] = {
    "len": FunctionSpec(1, 1, _SIZED, T.UINT, _length, what="len() measures strings and byte strings"),
    "count": FunctionSpec(1, 1, frozenset(FieldType), T.UINT, _count, needs_field=True,
                          what="count() counts the occurrences of a field"),
    "lower": FunctionSpec(1, 1, frozenset({T.STRING}), T.STRING, _case("lower"),
                          what="only string fields can be used with lower()"),
    "upper": FunctionSpec(1, 1, frozenset({T.STRING}), T.STRING, _case("upper"),
                          what="only string fields can be used with upper()"),
    "string": FunctionSpec(1, 1, _STRINGABLE, T.STRING, _to_string,
                           what="string() converts numbers, addresses and byte strings"),
    "abs": FunctionSpec(1, 1, NUMERIC_TYPES, None, _absolute, what="abs() needs a number"),
    "max": FunctionSpec(1, 99, NUMERIC_TYPES, None, _extreme(np.greater), what="max() needs numbers"),
    "min": FunctionSpec(1, 99, NUMERIC_TYPES, None, _extreme(np.less), what="min() needs numbers"),
    "ip_rfc1918": FunctionSpec(1, 1, frozenset({T.IPV4}), T.BOOL,
                               _address_class(_v4_in("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
                                              lambda v: False), what="ip_rfc1918() needs an IPv4 address"),
    "ip_linklocal": FunctionSpec(1, 1, _ADDRESSES, T.BOOL,
                                 _address_class(_v4_in("169.254.0.0/16"), _v6_in("fe80::/10")),
                                 what="ip_linklocal() needs an IP address"),
    "ip_multicast": FunctionSpec(1, 1, _ADDRESSES, T.BOOL,
                                 _address_class(_v4_in("224.0.0.0/4"), _v6_in("ff00::/8")),
                                 what="ip_multicast() needs an IP address"),
    "ip_ula": FunctionSpec(1, 1, frozenset({T.IPV6}), T.BOOL, _address_class(lambda v: False, _v6_in("fc00::/7")),
                           what="ip_ula() needs an IPv6 address"),
    "ip_special_name": FunctionSpec(1, 1, _ADDRESSES, T.STRING, _special("name"),
                                    what="ip_special_name() needs an IP address"),
    "ip_special_mask": FunctionSpec(1, 1, _ADDRESSES, T.UINT, _special("mask"),
                                    what="ip_special_mask() needs an IP address"),
}
