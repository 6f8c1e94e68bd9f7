"""The Jinja environment of the report templates in reports/ (markdown, HTML), with the escaping filters each
format needs. Everything a template prints from a finding went through one of them: `e` (HTML, autoescaped in
.html templates), `md` (markdown text), `code` (a markdown code span)."""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from diagnose.report.text_safety import clean
from diagnose.resources import data_dir

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def md(text) -> str:
    """Markdown text: HTML-escaped (markdown passes inline HTML through) and markdown punctuation backslashed."""
    if text is None:
        return ""
    s = clean(str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _MD_SPECIAL.sub(r"\\\1", s)
    return " ".join(s.split("\n"))


def code(text) -> str:
    """A markdown code span that survives backticks inside."""
    s = clean(str(text or "")).replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def utc(seconds) -> str:
    if seconds is None:
        return "n/a"
    return dt.datetime.fromtimestamp(float(seconds), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


@lru_cache(maxsize=1)
def report_environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(data_dir("reports"))), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html", "html.j2", "svg"]), trim_blocks=True, lstrip_blocks=True,
                      keep_trailing_newline=True)
    env.filters.update({"md": md, "code": code, "utc": utc, "clean": clean})
    return env
