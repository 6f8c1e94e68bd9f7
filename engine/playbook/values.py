"""Parameter values with units: `5s`, `350 ms`, `1%`, `64KB`, `0.5`, `true`.

Rates are fractions everywhere a filter sees them (flow.retransmission_rate_client is 0.047 for 4.7 %), so `1%`
is 0.01; messages show them with the `percent` filter.

A parameter keeps the kind of its default, so `--set tcp.retransmission-rate.threshold=0.5%` must be a percentage
too, and a rule comparing `flow.idle_before_rst >= param.min_idle` compares durations with durations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "min": 60_000_000_000,
      "h": 3_600_000_000_000}
SIZES = {"b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3}

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_WITH_UNIT = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ%]*)\s*$")


@dataclass(frozen=True)
class Value:
    kind: str  # number | duration | percent | size | bool | text
    number: float | int | bool | str  # durations in ns, percentages as fractions (1% -> 0.01), sizes in bytes

    def display(self) -> str:
        if self.kind == "duration":
            return format_duration_ns(int(self.number))
        if self.kind == "percent":
            return f"{self.number * 100:g}%"
        if self.kind == "size":
            return f"{int(self.number):,} bytes"
        if self.kind == "bool":
            return "true" if self.number else "false"
        return str(self.number)

    @property
    def python(self):
        """The value as the report templates see it: durations in seconds (float), the rest as is."""
        if self.kind == "duration":
            return int(self.number) / 1e9
        return self.number


class ValueError_(ValueError):
    pass


def parse_value(raw, *, kind: str | None = None) -> Value:
    """Parse a parameter value; with `kind`, the value must be of that kind (a plain number is accepted for a
    duration as seconds and for a percentage as percent)."""
    if isinstance(raw, bool):
        value = Value("bool", raw)
    elif isinstance(raw, (int, float)):
        value = Value("number", raw)
    else:
        text = str(raw).strip()
        if text.lower() in ("true", "false", "yes", "no", "on", "off"):
            value = Value("bool", text.lower() in ("true", "yes", "on"))
        else:
            m = _WITH_UNIT.match(text)
            if not m:
                if kind in (None, "text"):
                    return Value("text", text)
                raise ValueError_(f"'{text}' is not a {kind}")
            number_text, unit = m.group(1), m.group(2)
            number = float(number_text) if any(c in number_text for c in ".eE") else int(number_text)
            unit_l = unit.lower()
            if not unit:
                value = Value("number", number)
            elif unit == "%":
                value = Value("percent", float(number) / 100)
            elif unit_l in NS or unit in NS:
                value = Value("duration", int(round(number * NS.get(unit, NS.get(unit_l, 1)))))
            elif unit_l in SIZES:
                value = Value("size", int(round(number * SIZES[unit_l])))
            else:
                raise ValueError_(f"unknown unit '{unit}' in '{text}' (durations: ns us ms s min h; sizes: B KB MB "
                                  f"KiB MiB; percentages: %)")
    if kind is None or value.kind == kind:
        return value
    if value.kind == "number" and kind == "duration":
        return Value("duration", int(round(float(value.number) * 1e9)))
    if value.kind == "number" and kind == "percent":
        return Value("percent", float(value.number))  # a bare number for a percentage is the fraction (0.01 = 1%)
    if value.kind == "number" and kind == "size":
        return Value("size", int(value.number))
    if value.kind == "number" and kind == "number":
        return value
    raise ValueError_(f"'{raw}' is a {value.kind}, this parameter is a {kind}")


def format_duration_ns(ns: int) -> str:
    s = ns / 1e9
    if abs(s) >= 120:
        return f"{s:,.0f} s"
    if abs(s) >= 1:
        return f"{s:.1f} s" if abs(s - round(s, 1)) < 1e-9 else f"{s:.3f} s"
    if abs(s) >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} µs"
