"""Load the lark grammars shipped in grammar/ and turn lark's syntax errors into one-line FilterErrors.

Both filter languages are LALR(1) with a plain lexer (a keyword is a keyword everywhere, so `tcp or or udp` fails at
the second `or`): parsing is linear and errors point at the first token that cannot continue the filter, which is
what the caret shows.
"""

from __future__ import annotations

import hashlib
import io
from functools import lru_cache
from pathlib import Path

import lark
from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from diagnose.errors import FilterError
from diagnose.resources import data_dir, save_whole, user_cache_dir

_OPTIONS = {"parser": "lalr", "lexer": "basic", "propagate_positions": True, "maybe_placeholders": True}

# Human names for the terminals lark reports as "expected", so a message can say what would have fitted.
_TERMINAL_NAMES = {
    "WORD": "a value",
    "ADDRESS": "a value",
    "ESCAPED": "a value",
    "STRING": "a string",
    "RAW_STRING": "a string",
    "RPAR": '")"',
    "RBRACE": '"}"',
    "RSQB": '"]"',
    "COMMA": '","',
}


@lru_cache(maxsize=None)
def load_parser(grammar_file: str) -> Lark:
    """The LALR parser for one grammar file of grammar/ (once per process, from the user's cache when it can)."""
    return cached_parser((data_dir("grammar") / grammar_file).read_text(encoding="utf-8"), user_cache_dir() / "grammar")


def cached_parser(text: str, folder: Path) -> Lark:
    """Building the LALR tables takes 40 ms (display filters) to 110 ms (BPF) at every start; a saved parser loads in
    under 10. The file is named by a digest of the grammar, lark's version and the options, put in place whole
    (resources.save_whole), and rebuilt when it cannot be loaded."""
    key = hashlib.sha256(repr((text, lark.__version__, sorted(_OPTIONS.items()))).encode()).hexdigest()[:24]
    path = folder / f"{key}.lark"
    try:
        with path.open("rb") as f:
            return Lark.load(f)
    except Exception:  # absent, unreadable or damaged: build it as if there were no cache
        pass
    parser = Lark(text, **_OPTIONS)
    saved = io.BytesIO()
    parser.save(saved)
    save_whole(path, saved.getvalue())
    return parser


def parse(grammar_file: str, expression: str, language: str) -> Tree:
    """Parse `expression`; a syntax error becomes a FilterError at the offending column."""
    try:
        return load_parser(grammar_file).parse(expression)
    except UnexpectedInput as exc:
        raise syntax_error(exc, expression, language) from None


def syntax_error(exc: UnexpectedInput, expression: str, language: str) -> FilterError:
    if isinstance(exc, UnexpectedCharacters):
        char = expression[exc.pos_in_stream]
        return FilterError(expression, exc.pos_in_stream, f"unexpected character {_quote(char)}", language=language)
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token: Token = exc.token
        column = token.start_pos if token.start_pos is not None else len(expression)
        message = f"{_quote(str(token))} was unexpected here"
        hint = _expected_hint(exc.expected)
        return FilterError(expression, column, message + hint, language=language)
    if isinstance(exc, (UnexpectedToken, UnexpectedEOF)):
        hint = _expected_hint(getattr(exc, "expected", ()))
        return FilterError(expression, len(expression.rstrip()), "unexpected end of filter" + hint,
                           language=language)
    return FilterError(expression, 0, "syntax error", language=language)  # pragma: no cover (lark has no others)


def unwrap_visit_error(exc: VisitError) -> Exception:
    """Transformers raise FilterError inside lark's VisitError wrapper; give back the original."""
    return exc.orig_exc


def _expected_hint(expected) -> str:
    """", expected X or Y" when lark's few expected terminals all have a readable name, else nothing."""
    expected = {name for name in expected or () if name != "$END"}
    if not expected or not expected <= _TERMINAL_NAMES.keys():
        return ""
    names = sorted({_TERMINAL_NAMES[name] for name in expected})
    return ", expected " + " or ".join(names) if len(names) <= 3 else ""


def _quote(text: str) -> str:
    text = text if len(text) <= 40 else text[:37] + "..."
    return '"' + text.replace("\n", "\\n").replace("\t", "\\t") + '"'
