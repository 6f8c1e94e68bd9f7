"""The Jinja environment of playbook messages: sandboxed, strict about unknown names, with formatting filters for
the numbers a network engineer reads (durations, sizes, rates, percentages, frame lists).

Messages are plain text; every renderer escapes them for its own format (HTML, markdown, terminal), so the
environment does not autoescape. Templates run in a sandbox: a playbook from a colleague cannot reach Python.
"""

from __future__ import annotations

import datetime as dt
import math
from functools import lru_cache

from jinja2 import StrictUndefined, nodes
from jinja2.sandbox import SandboxedEnvironment

# the names a message template can read
TEMPLATE_ROOTS = ("flow", "capture", "param", "agg", "key", "group", "finding", "symptoms", "rule", "flows")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def seconds(value, digits: int | None = None) -> str:
    """A duration given in seconds: '9.0 s', '350 s', '2.50 s', '13 µs'."""
    if _missing(value):
        return "n/a"
    s = float(value)
    if digits is not None:
        return f"{s:.{digits}f} s"
    a = abs(s)
    if a >= 100:
        return f"{s:,.0f} s"
    if a >= 10:
        return f"{s:.1f} s"
    if a >= 1:
        return f"{s:.2f} s"
    if a >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    if a == 0:
        return "0 s"
    return f"{s * 1e6:.0f} µs"


def milliseconds(value) -> str:
    return "n/a" if _missing(value) else f"{float(value) * 1e3:.1f} ms"


def size(value) -> str:
    """Bytes with thousands separators and a readable unit: '65,535 bytes', '4.0 MB (4,000,000 bytes)'."""
    if _missing(value):
        return "n/a"
    n = float(value)
    if abs(n) < 100_000:
        return f"{int(n):,} bytes"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.1f} {unit} ({int(n):,} bytes)"
    return f"{int(n):,} bytes"  # pragma: no cover


def number(value, digits: int = 0) -> str:
    if _missing(value):
        return "n/a"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    return f"{int(round(float(value))):,}" if not digits else f"{float(value):,.{digits}f}"


def percent(value, digits: int = 1) -> str:
    """A percentage value (already in percent): 4.7 -> '4.7 %'."""
    return "n/a" if _missing(value) else f"{float(value):.{digits}f} %"


def bitrate(value) -> str:
    """Bytes per second as a bit rate: '1.2 MB/s (9.6 Mbit/s)'."""
    if _missing(value):
        return "n/a"
    bps = float(value) * 8
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{float(value) / 1e6:.2f} MB/s ({bps / scale:.1f} {unit})"
    return f"{bps:.0f} bit/s"


def timestamp(value) -> str:
    """Epoch seconds as an ISO date-time in UTC."""
    if _missing(value):
        return "n/a"
    return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def date(value) -> str:
    if _missing(value):
        return "n/a"
    return dt.datetime.fromtimestamp(float(value), dt.timezone.utc).strftime("%Y-%m-%d")


def plural(count, word: str, many: str | None = None) -> str:
    """'1 flow', '3 flows' (with thousands separators)."""
    n = 0 if _missing(count) else int(count)
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def frames(values, limit: int = 12) -> str:
    """Frame numbers compressed into ranges: [1, 2, 3, 7] -> '1-3,7'."""
    items = sorted({int(v) for v in values or ()})
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    shown = parts[:limit]
    return ",".join(shown) + (",…" if len(parts) > limit else "")


FILTERS = {
    "seconds": seconds,
    "ms": milliseconds,
    "size": size,
    "bytes": size,
    "number": number,
    "percent": percent,
    "bitrate": bitrate,
    "timestamp": timestamp,
    "date": date,
    "plural": plural,
    "frames": frames,
}


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                               trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


def attribute_paths(tree: nodes.Template, root: str) -> list[tuple[str, int]]:
    """`root.a.b` paths read by a template (dotted, with the template line), for checking names of facts."""
    found: list[tuple[str, int]] = []
    for node in tree.find_all(nodes.Getattr):
        parts = []
        cursor = node
        while isinstance(cursor, nodes.Getattr):
            parts.append(cursor.attr)
            cursor = cursor.node
        if isinstance(cursor, nodes.Name) and cursor.name == root:
            found.append((".".join([root, *reversed(parts)]), node.lineno))
    # keep the longest path of each chain only
    found.sort(key=lambda item: -len(item[0]))
    kept: list[tuple[str, int]] = []
    for path, line in found:
        if not any(k.startswith(path + ".") for k, _ in kept):
            kept.append((path, line))
    return kept
