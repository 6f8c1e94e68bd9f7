"""Make packet-derived text safe to show: no control characters (terminal escapes, NUL, bidi overrides) and no
characters XML cannot carry. Escaping for a format (HTML, markdown, rich markup) is each renderer's job on top."""

from __future__ import annotations

import re

# C0/C1 controls except tab and newline, DEL, and the Unicode bidi overrides that can reorder what a reader sees
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufffe\uffff]")


def clean(text: str) -> str:
    """Replace unsafe characters with a visible escape (\\x1b, \\u202e)."""
    if not text:
        return text
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}",
                       text)
