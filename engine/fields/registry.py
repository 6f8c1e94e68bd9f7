"""The field registry: every display-filter field, with its type, description and extractor.

Protocol modules register their fields when imported, either one at a time with the `@field` decorator or as a
table with `register_columns`. The registry imports the modules named in FIELD_MODULES the first time it is asked
for a field, so a later module (TCP analysis, DNS, HTTP, TLS, flow facts) only has to add its name there.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field as dataclass_field
from typing import Any

from diagnose.fields.context import ChunkContext
from diagnose.fields.values import FieldType, Occurrence

Extractor = Callable[[ChunkContext], list[Occurrence]]

# Modules that register fields (imported on first use of the registry). Add yours here.
FIELD_MODULES: list[str] = [
    "diagnose.fields.frame",
    "diagnose.fields.link",
    "diagnose.fields.ip",
    "diagnose.fields.transport",
    "diagnose.fields.icmp",
    "diagnose.fields.arp",
    "diagnose.tcp.fields",  # TCP analysis: needs the chunk's TcpAnalyzer rows (diagnose.tcp.fields.attach)
    "diagnose.protocols.fields",  # dns.*, http.*, http2.*, tls.*, x509*: need the chunk's AppLayer results
]


@dataclass(frozen=True)
class FlagBits:
    """A field that is bits of a word per row which the chunk has anyway (the TCP flags, the TCP analysis flags):
    a filter tests such fields, and several at once, with one mask of the word instead of extracting each field.

    `word(ctx)` is that word (an integer array, one per row; the same array for every field of the word), or None
    when the chunk's field is not a single occurrence the word describes (a TCP header quoted in an ICMP error
    adds a second): then filters extract the field. The field exists on a row where the word has any bit of
    `present`; a bool field's value is bit `value` (0 for a field that is only present or not)."""

    word: Callable[[ChunkContext], Any]
    present: int
    value: int = 0


@dataclass(frozen=True)
class Field:
    name: str
    type: FieldType
    description: str
    extractor: Extractor = dataclass_field(repr=False, compare=False)
    bits: int = 0  # width of an integer field (limits literals: tcp.port == 70000 is an error)
    base: str = "dec"  # how string() shows an integer: dec | hex
    value_names: Mapping[int, str] | None = dataclass_field(default=None, repr=False, compare=False)
    protocol: str = ""  # the protocol the field belongs to ("tcp" for tcp.flags.syn)
    flag: FlagBits | None = dataclass_field(default=None, repr=False, compare=False)  # see FlagBits

    def extract(self, ctx: ChunkContext) -> list[Occurrence]:
        """The field's occurrences in this chunk (computed once per chunk)."""
        cache = ctx._cache  # ctx.cached, inlined (a rule set extracts ~60 fields per chunk)
        got = cache.get(self.name)
        if got is None:
            got = cache[self.name] = self.extractor(ctx)
        return got


_FIELDS: dict[str, Field] = {}
_loaded = False


class DuplicateField(ValueError):
    pass


def register(new: Field) -> Field:
    if new.name in _FIELDS and _FIELDS[new.name] is not new:
        raise DuplicateField(f"field {new.name!r} is registered twice")
    _FIELDS[new.name] = new
    return new


def field(name: str, type: FieldType, description: str, **options) -> Callable[[Extractor], Extractor]:
    """Decorator: register the decorated extractor as field `name`."""
    def wrap(extractor: Extractor) -> Extractor:
        register(Field(name, type, description, extractor, protocol=options.pop("protocol", name.split(".")[0]),
                       **options))
        return extractor
    return wrap


def register_table(protocol: str, rows: Iterable[tuple], make_extractor: Callable[..., Extractor]) -> None:
    """Register a table of fields: rows of (name, type, description, source, options dict or omitted);
    make_extractor(source) builds each extractor, so a protocol module states its fields as data."""
    for row in rows:
        name, ftype, description, source, *rest = row
        options = dict(rest[0]) if rest else {}
        register(Field(name, ftype, description, make_extractor(source), protocol=protocol, **options))


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in FIELD_MODULES:
        importlib.import_module(module)


def lookup(name: str) -> Field | None:
    _ensure_loaded()
    return _FIELDS.get(name)


def all_fields() -> list[Field]:
    """Every registered field, sorted by name (the generated field reference)."""
    _ensure_loaded()
    return [_FIELDS[name] for name in sorted(_FIELDS)]


def suggest(name: str) -> str | None:
    """The closest registered name, for "did you mean" (None when nothing is close)."""
    _ensure_loaded()
    matches = difflib.get_close_matches(name, _FIELDS.keys(), n=1, cutoff=0.75)
    if matches:
        return matches[0]
    # a known field under a different protocol prefix (ipv6.ttl -> ipv6.hlim is not guessable; tcp.syn -> ...)
    tail = name.rsplit(".", 1)[-1]
    same_tail = [n for n in _FIELDS if n.endswith("." + tail) and n.split(".")[0] == name.split(".")[0]]
    return same_tail[0] if len(same_tail) == 1 else None
