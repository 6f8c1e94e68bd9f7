"""The Jinja environment of playbook messages: sandboxed, strict about unknown names, with formatting filters for
the numbers a network engineer reads (durations, sizes, rates, percentages, frame lists).

Messages are plain text; every renderer escapes them for its own format (HTML, markdown, terminal), so the
environment does not autoescape. Templates run in a sandbox: a playbook from a colleague cannot reach Python.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import marshal
import math
import os
import sys
import types
from functools import lru_cache
from typing import TYPE_CHECKING

from diagnose.resources import save_whole, user_cache_dir

if TYPE_CHECKING:
    from jinja2 import nodes

    from diagnose.playbook.message_environment import MessageEnvironment

# jinja2 (~25 ms, ~5 MB) is imported when a template is first parsed or rendered, not with this module: a rule set
# read from the cache (playbook/cache.py) holds its templates as text until a finding needs one.

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
    """A fraction as a percentage: 0.047 -> '4.7 %' (rates and shares are fractions in facts and filters)."""
    return "n/a" if _missing(value) else f"{float(value) * 100:.{digits}f} %"


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


def flatten(lists) -> list:
    """Lists joined into one, in order: flows | map(attribute='dns_error_names') | flatten. The same list as
    sum(start=[]) in linear time (sum copies the list it has built so far at every step: 20 ms for 5,167 flows)."""
    out: list = []
    for item in lists:
        if type(item) is list:
            out.extend(item)
        else:
            out = out + item  # what sum does: a tuple or None fails with sum's TypeError
    return out


ICMP4_UNREACHABLE = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
                     3: "port unreachable", 4: "fragmentation needed", 9: "network administratively prohibited",
                     10: "host administratively prohibited", 13: "communication administratively prohibited"}
ICMP6_UNREACHABLE = {0: "no route", 1: "administratively prohibited", 3: "address unreachable", 4: "port unreachable",
                     5: "source address failed policy", 6: "reject route"}
ICMP4_TYPES = {3: "destination unreachable", 4: "source quench", 5: "redirect", 11: "time exceeded",
               12: "parameter problem"}


def icmp_name(icmp_type, code=None, version: int = 4) -> str:
    """'destination unreachable, port unreachable (type 3, code 3)'."""
    if _missing(icmp_type):
        return "n/a"
    t = int(icmp_type)
    c = None if _missing(code) else int(code)
    if version == 6:
        name = {1: "destination unreachable", 2: "packet too big", 3: "time exceeded", 4: "parameter problem"}.get(t)
        detail = ICMP6_UNREACHABLE.get(c) if t == 1 else None
    else:
        name = ICMP4_TYPES.get(t)
        detail = ICMP4_UNREACHABLE.get(c) if t == 3 else None
    text = name or f"ICMP type {t}"
    if detail:
        text += f", {detail}"
    return f"{text} (type {t}, code {c})" if c is not None else f"{text} (type {t})"


_NICE_SECONDS = (1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 600, 900, 1200, 1800, 2700, 3600, 7200)


def keepalive_below(idle_seconds, margin: float = 0.9) -> str:
    """A round keepalive interval safely below a measured idle timeout: 350 -> '300 s', 900 -> '600 s'."""
    if _missing(idle_seconds):
        return "n/a"
    limit = float(idle_seconds) * margin
    nice = [s for s in _NICE_SECONDS if s <= limit]
    value = nice[-1] if nice else max(limit, 0.5)
    return f"{value:g} s"


TLS_ALERT_MEANINGS = {
    10: "a message arrived that the peer did not expect at that point (a protocol bug or a middlebox meddling)",
    20: "a record failed its integrity check: corruption on the path, a broken middlebox, or mismatched keys",
    22: "a record was too large",
    40: "the two sides share no acceptable parameters (cipher suite, group or signature algorithm)",
    42: "the certificate was rejected (often a name mismatch when the client checks the host name in the handshake)",
    43: "the certificate is of an unsupported type",
    44: "the certificate was revoked by its issuer",
    45: "the certificate has expired (or is not yet valid) at the client's clock",
    46: "the certificate could not be validated for another reason (untrusted, incomplete chain, policy)",
    47: "a handshake field had an illegal value",
    48: "the certificate chain does not lead to a CA the client trusts (missing intermediate or private CA)",
    49: "access denied after a valid certificate (authorisation)",
    50: "a message could not be decoded",
    51: "a signature or Finished check failed (wrong key, broken middlebox, or TLS interception)",
    70: "the peer does not accept the protocol version offered",
    71: "the offered parameters are below what the server requires (too weak)",
    80: "the peer hit an internal error unrelated to the protocol",
    86: "a fallback to a lower version was detected and refused (downgrade protection)",
    90: "the user or application cancelled the handshake",
    109: "a required extension is missing",
    110: "an extension was sent that the peer never offered",
    112: "the server does not know the name sent in SNI",
    116: "the server requires a client certificate and none was sent",
    120: "no application protocol (ALPN) in common",
}


def tls_alert_meaning(code) -> str:
    """Why a TLS alert is sent, in a sentence."""
    if _missing(code):
        return "an alert whose content is encrypted"
    return TLS_ALERT_MEANINGS.get(int(code), "see RFC 8446 §6.2 for this alert")


FILTERS = {
    "tls_alert": tls_alert_meaning,
    "icmp": icmp_name,
    "keepalive_below": keepalive_below,
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
    "flatten": flatten,
}


_COMPILER_OPTIONS = ("block_start_string", "block_end_string", "variable_start_string", "variable_end_string",
                     "comment_start_string", "comment_end_string", "line_statement_prefix", "line_comment_prefix",
                     "trim_blocks", "lstrip_blocks", "newline_sequence", "keep_trailing_newline", "optimized",
                     "is_async", "autoescape", "finalize", "sandboxed", "intercepted_binops", "intercepted_unops")


def _compiler_signature(env: MessageEnvironment) -> str:
    """What the code jinja generates for a source depends on: Python's bytecode version, jinja's, the
    environment's options and extensions, and the filters and tests (whether a name exists decides what is
    generated, and the optimiser folds constant expressions with the filters themselves: the files defining
    them are part of the key by size and time). Digested once while the options and functions stay the same."""
    functions = (*sorted(env.filters.items()), ("", None), *sorted(env.tests.items()))
    options = tuple(getattr(env, option, None) for option in _COMPILER_OPTIONS)
    fingerprint = (tuple(id(f) for _, f in functions), tuple(id(o) for o in options), tuple(env.extensions))
    cached = env.__dict__.get("_signature")
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    files = {}
    for _, f in functions:
        path = getattr(sys.modules.get(getattr(f, "__module__", None) or ""), "__file__", None)
        if path and path not in files:
            try:
                stat = os.stat(path)
                files[path] = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                files[path] = None
    import jinja2

    signature = (importlib.util.MAGIC_NUMBER, jinja2.__version__, type(env).__module__, type(env).__qualname__,
                 tuple(_described(o) for o in options), sorted(env.extensions),
                 tuple((name, _described(f)) for name, f in functions), sorted(files.items()))
    digest = hashlib.sha256(repr(signature).encode()).hexdigest()
    env.__dict__["_signature"] = (fingerprint, digest)
    return digest


def _described(value) -> str:
    """A value as the same text in every process (a function by its name, not its address)."""
    if callable(value):
        return f"{getattr(value, '__module__', None)}.{getattr(value, '__qualname__', type(value).__qualname__)}"
    return repr(value)


def compile_cached(env: MessageEnvironment, source: str):
    """env.from_string(source), with the compiled code kept in the user's cache: compiling the ~17 messages a busy
    capture renders cost ~20 ms of every diagnosis, loading their code ~1 ms. Only successful compiles are saved;
    an absent, unreadable or damaged file is compiled again."""
    key = hashlib.sha256(f"{_compiler_signature(env)}\0{source}".encode()).hexdigest()[:32]
    path = user_cache_dir() / "templates" / f"{key}.code"
    code = None
    try:
        code = marshal.loads(path.read_bytes())
    except Exception:  # noqa: BLE001 - absent or damaged: compile it as if there were no cache
        pass
    if not isinstance(code, types.CodeType):
        code = env.compile(source)
        save_whole(path, marshal.dumps(code))
    return env.template_class.from_code(env, code, env.make_globals(None), None)  # what from_string makes


@lru_cache(maxsize=1)
def environment() -> MessageEnvironment:
    from jinja2 import StrictUndefined

    from diagnose.playbook.message_environment import MessageEnvironment

    env = MessageEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(FILTERS)
    return env


class LazyTemplate:
    """A checked message template that compiles on its first rendering: loading only needs the parse (for the
    checks), compiling costs twice as much again, and most rules never fire on a given capture.

    Rendering makes the context jinja's Template.render makes (the globals, then the values), from a dict copy of
    the globals taken once: a template's globals are a ChainMap, which render iterated twice per call (half of the
    ~4 us it spent before the template's own code ran, thousands of findings a run). A template without any tag
    (an explanation with braces in its text) renders the same text whatever the values: rendered once."""

    __slots__ = ("source", "_compiled", "_globals", "_text")

    def __init__(self, source: str, compiled=None):
        self.source = source
        self._compiled = compiled
        self._globals = None
        self._text = None  # the text of a template without tags, False for one with tags, None until known

    def __reduce__(self):
        # pickled (playbook/cache.py) as its text: compiled again, from the template code cache, when first rendered
        return LazyTemplate, (self.source,)

    def compiled(self):
        if self._compiled is None:
            self._compiled = compile_cached(environment(), self.source)
        return self._compiled

    def render(self, *args, **kwargs) -> str:
        """Template.render: the values as dict() takes them."""
        text = self._text
        if text:
            if kwargs or len(args) != 1:
                dict(*args, **kwargs)  # what Template.render does with wrong arguments: fail
            return text
        template = self._compiled if self._compiled is not None else self.compiled()
        env = template.environment
        if env.is_async:
            return template.render(*args, **kwargs)
        if text is None:
            self._text = False  # until proven constant (the rendering below must take the general path)
            if not _has_tags(env, self.source):
                self._text = self.render({}) or False
                return self.render(*args, **kwargs)
        names = self._globals
        if names is None:  # the environment's globals do not change once templates are made
            names = self._globals = dict(template.globals)
        parent = names.copy()
        if kwargs or len(args) != 1:
            parent.update(dict(*args, **kwargs))
        else:
            parent.update(args[0])
        context = env.context_class(env, parent, template.name, template.blocks, globals=names)
        try:
            return env.concat(template.root_render_func(context))
        except Exception:
            env.handle_exception()

    def __getattr__(self, name: str):  # anything else a jinja Template offers (generate, module, ...)
        return getattr(self.compiled(), name)


def _has_tags(env, source: str) -> bool:
    """Whether jinja's lexer can find anything but text in source (a variable, block, comment or line statement)."""
    return bool(env.line_statement_prefix or env.line_comment_prefix) or any(
        start in source for start in (env.variable_start_string, env.block_start_string, env.comment_start_string))


@lru_cache(maxsize=1)
def _plain_nodes() -> tuple[type, ...]:
    """Node kinds whose compilation cannot fail once their filters and tests exist, and that declare no names. A
    plain template is made of these, plus `{% set NAME = ... %}` at its top level: the names it reads from the
    context are then its loaded Name nodes, less those a top-level set declared before them."""
    from jinja2 import nodes

    return (nodes.Template, nodes.Output, nodes.TemplateData, nodes.Name, nodes.Getattr, nodes.Getitem,
            nodes.Slice, nodes.Const, nodes.Filter, nodes.Test, nodes.If, nodes.CondExpr, nodes.And, nodes.Or,
            nodes.Not, nodes.Neg, nodes.Pos, nodes.Compare, nodes.Operand, nodes.Add, nodes.Sub, nodes.Mul,
            nodes.Div, nodes.FloorDiv, nodes.Mod, nodes.Pow, nodes.Concat, nodes.Call, nodes.Keyword,
            nodes.List, nodes.Tuple, nodes.Dict, nodes.Pair)


_SPECIAL_NAMES = frozenset(("self", "loop", "caller", "varargs", "kwargs"))  # the compiler may declare these


def plain_names(tree: nodes.Template) -> set[str] | None:
    """The context names a plain template reads (what jinja2.meta.find_undeclared_variables says, without compiling
    it), when every filter and test it uses exists; None when only compiling can tell (then compile it, use meta)."""
    from jinja2 import nodes

    env = environment()
    declared: set[str] = set()
    undeclared: set[str] = set()
    for statement in tree.body:
        if type(statement) is nodes.Assign and type(statement.target) is nodes.Name \
                and statement.target.name not in _SPECIAL_NAMES:
            loads = _plain_loads(statement.node, env)  # the value is evaluated before the name is set
            if loads is None:
                return None
            undeclared |= loads - declared
            declared.add(statement.target.name)
            continue
        loads = _plain_loads(statement, env)
        if loads is None:
            return None
        undeclared |= loads - declared
    return {name for name in undeclared if name not in env.globals}  # as jinja2.meta: globals (range, ...) are known


def _plain_loads(root: nodes.Node, env) -> set[str] | None:
    from jinja2 import nodes

    plain = _plain_nodes()
    names: set[str] = set()
    stack: list[nodes.Node] = [root]
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind not in plain:
            return None
        if kind is nodes.Name:
            if node.ctx != "load" or node.name in _SPECIAL_NAMES:
                return None
            names.add(node.name)
        elif kind is nodes.Filter:
            if node.name not in env.filters or node.node is None:
                return None
        elif kind is nodes.Test and node.name not in env.tests:
            return None
        stack.extend(node.iter_child_nodes())
    return names


_UNREPEATABLE_FILTERS = frozenset(("random",))  # filters whose text is not a function of their input


def read_attributes(tree: nodes.Template) -> tuple[tuple[str, str], ...] | None:
    """The (name, attribute) pairs a plain template reads from its context, when it reads the context only as
    `name.attribute` (no whole value, no item, no call, no unrepeatable filter): its text is then a function of
    those values alone, and equal values (of equal types) render equal text. None when that does not hold."""
    from jinja2 import nodes

    names = plain_names(tree)
    if names is None or any(True for _ in tree.find_all(nodes.Call)) or \
            any(f.name in _UNREPEATABLE_FILTERS for f in tree.find_all(nodes.Filter)):
        return None
    under_attribute = {id(node.node) for node in tree.find_all(nodes.Getattr) if type(node.node) is nodes.Name}
    read: dict[tuple[str, str], None] = {}
    for node in tree.find_all(nodes.Getattr):
        if type(node.node) is nodes.Name and node.node.name in names:
            read[(node.node.name, node.attr)] = None
    for node in tree.find_all(nodes.Name):
        if node.name in names and id(node) not in under_attribute:
            return None  # the whole value is read (passed on, iterated, indexed)
    return tuple(read)


def attribute_paths(tree: nodes.Template, root: str) -> list[tuple[str, int]]:
    """`root.a.b` paths read by a template (dotted, with the template line), for checking names of facts."""
    from jinja2 import nodes

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


def __getattr__(name: str):
    # MessageEnvironment lives with jinja2 in its own module (imported when first asked for, like environment())
    if name == "MessageEnvironment":
        from diagnose.playbook.message_environment import MessageEnvironment

        return MessageEnvironment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
