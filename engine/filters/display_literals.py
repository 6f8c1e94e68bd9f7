"""Typed literals of display filters: an unquoted word means what the field it is compared with needs.

`80` is an integer next to tcp.port, one byte (0x80) next to a byte slice, and `10.0.0.0/8` is a network next to
ip.addr. Each parser returns the constant in the representation the evaluator uses (see fields.values) or raises
LiteralError with a message; the type checker adds the column.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from diagnose.fields.values import FieldType


class LiteralError(ValueError):
    pass


@dataclass(frozen=True)
class Network4:
    address: int
    prefix: int = 32

    @property
    def mask(self) -> int:
        return (0xFFFFFFFF << (32 - self.prefix)) & 0xFFFFFFFF if self.prefix else 0


@dataclass(frozen=True)
class Network6:
    address: int
    prefix: int = 128

    def masks(self) -> tuple[int, int]:
        mask = (((1 << 128) - 1) << (128 - self.prefix)) & ((1 << 128) - 1)
        return mask >> 64, mask & 0xFFFFFFFFFFFFFFFF

    def halves(self) -> tuple[int, int]:
        return self.address >> 64, self.address & 0xFFFFFFFFFFFFFFFF


_INT = re.compile(r"(0[xX][0-9a-fA-F]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_FLOAT = re.compile(r"([0-9]+\.?[0-9]*([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?|inf|nan|infinity)",
                    re.IGNORECASE)
_HEX_SEP = re.compile(r"[0-9a-fA-F]{1,2}([:.\-][0-9a-fA-F]{1,2})*")
_HEX_RUN = re.compile(r"([0-9a-fA-F]{2})+")


def parse_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise LiteralError(f'"{text}" is not a valid number')
    if text[:2] in ("0x", "0X"):
        return int(text, 16)
    if text[:2] in ("0b", "0B"):
        return int(text[2:], 2)
    if text.startswith("0") and len(text) > 1:
        return int(text, 8)
    return int(text)


def parse_float(text: str) -> float:
    if not _FLOAT.fullmatch(text) and not _INT.fullmatch(text):
        raise LiteralError(f'"{text}" is not a valid number')
    if _INT.fullmatch(text) and not re.fullmatch(r"0[0-7]+|[0-9]+", text):
        return float(parse_int(text))
    return float(text)


def parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return parse_int(text) != 0


def parse_bytes(text: str) -> bytes:
    """Byte strings: aa:bb:cc (also . or - between bytes), aabbcc (even number of digits), one byte as 1-2 hex
    digits, or 0xNN."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]{2}", text):
        return bytes([int(text[2:], 16)])
    if _HEX_SEP.fullmatch(text) and (len(text) <= 2 or not _HEX_RUN.fullmatch(text)):
        return bytes(int(part, 16) for part in re.split(r"[:.\-]", text))
    if _HEX_RUN.fullmatch(text):
        return bytes.fromhex(text)
    # 4-digit groups separated by dots (0016.41c7.f530)
    if re.fullmatch(r"[0-9a-fA-F]{4}(\.[0-9a-fA-F]{4})+", text):
        return bytes.fromhex(text.replace(".", ""))
    raise LiteralError(f'"{text}" is not a valid byte string')


def parse_ether(text: str) -> int:
    try:
        value = parse_bytes(text)
    except LiteralError:
        value = b""
    if len(value) != 6:
        raise LiteralError(f'"{text}" is not a valid Ethernet address')
    return int.from_bytes(value, "big")


def parse_ipv4(text: str) -> Network4:
    address, _, prefix = text.partition("/")
    parts = address.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) <= 255 for p in parts):
        raise LiteralError(f'"{text}" is not a valid IPv4 address')
    value = 0
    for p in parts:
        value = (value << 8) | int(p)
    length = 32
    if prefix:
        if not prefix.isdigit() or int(prefix) > 32:
            raise LiteralError(f'"{prefix}" is not a valid prefix length for an IPv4 address')
        length = int(prefix)
    return Network4(value & Network4(0, length).mask, length)


def parse_ipv6(text: str) -> Network6:
    address, _, prefix = text.partition("/")
    try:
        value = int(ipaddress.IPv6Address(address))
    except ValueError:
        raise LiteralError(f'"{text}" is not a valid IPv6 address') from None
    length = 128
    if prefix:
        if not prefix.isdigit() or int(prefix) > 128:
            raise LiteralError(f'"{prefix}" is not a valid prefix length for an IPv6 address')
        length = int(prefix)
    mask = (((1 << 128) - 1) << (128 - length)) & ((1 << 128) - 1)
    return Network6(value & mask, length)


def parse_seconds(text: str) -> int:
    """Decimal seconds to integer nanoseconds, exactly (no binary floating point on the way)."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise LiteralError(f'"{text}" is not a valid time') from None
    if not value.is_finite():
        raise LiteralError(f'"{text}" is not a valid time')
    return int(value * 1_000_000_000)


_DATE_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%b %d, %Y %H:%M:%S",
                 "%b %d, %Y %H:%M", "%b %d, %Y")


def parse_time(text: str) -> int:
    """An absolute time: seconds since the epoch, ISO 8601 (Z or +hh:mm for a zone) or Wireshark's
    "Sep 26, 2004 23:18:04.954975"; without a zone it is local time, as in Wireshark. Nanoseconds since the epoch."""
    stripped = text.strip()
    if re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", stripped):
        return parse_seconds(stripped)
    zone = None
    match = re.fullmatch(r"(.*?)(Z|UTC|[+-]\d{2}:?\d{2})?", stripped)
    body, zone_text = match.group(1).strip(), match.group(2)
    if zone_text:
        if zone_text in ("Z", "UTC"):
            zone = 0
        else:
            sign = 1 if zone_text[0] == "+" else -1
            digits = zone_text[1:].replace(":", "")
            zone = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    fraction = 0
    frac_match = re.search(r"\.(\d+)$", body)
    if frac_match:
        digits = frac_match.group(1)[:9].ljust(9, "0")
        fraction = int(digits)
        body = body[: frac_match.start()]
    for fmt in _DATE_FORMATS:
        try:
            moment = datetime.strptime(body, fmt)
            break
        except ValueError:
            continue
    else:
        raise LiteralError(f'"{text}" is not a valid absolute time (use "YYYY-MM-DD hh:mm:ss[.fraction][Z]")')
    if zone is None:
        seconds = int(time.mktime(moment.timetuple()))
    else:
        seconds = calendar.timegm(moment.replace(tzinfo=timezone.utc).timetuple()) - zone
    return seconds * 1_000_000_000 + fraction


def literal_for(ftype: FieldType, text: str, value_names=None):
    """The constant an unquoted word stands for next to a field of type `ftype`."""
    if ftype in (FieldType.UINT, FieldType.INT):
        try:
            return parse_int(text)
        except LiteralError:
            if value_names:
                found = lookup_value_name(value_names, text)
                if found is not None:
                    return found
            raise
    if ftype == FieldType.FLOAT:
        return parse_float(text)
    if ftype == FieldType.BOOL:
        return parse_bool(text)
    if ftype == FieldType.IPV4:
        return parse_ipv4(text)
    if ftype == FieldType.IPV6:
        return parse_ipv6(text)
    if ftype == FieldType.ETHER:
        return parse_ether(text)
    if ftype in (FieldType.BYTES, FieldType.NONE):
        return parse_bytes(text)
    if ftype == FieldType.STRING:
        return text
    if ftype == FieldType.TIME:
        return parse_time(text)
    if ftype == FieldType.RELTIME:
        return parse_seconds(text)
    raise LiteralError(f'"{text}" cannot be a value here')


def lookup_value_name(value_names, text: str) -> int | None:
    """A value-string name (ip.proto == "TCP") back to its number, when exactly one value has that name."""
    wanted = text.lower()
    matches = [value for value, name in value_names.items() if name.lower() == wanted]
    return matches[0] if len(matches) == 1 else None
