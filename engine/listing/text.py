"""First-line summaries of line-oriented application protocols (HTTP, RTSP, SIP, FTP, SMTP, SSH banners).

tcpdump without -v shows the protocol name and, when the payload starts like a request or response, its first line:
`HTTP: GET / HTTP/1.1`, `HTTP: HTTP/1.1 200 OK`, `FTP: 220 ready`. A line counts only when it is printable ASCII (tabs
allowed) ending in LF or CRLF; a printable line cut short by the capture is shown, then marked truncated.
"""

from __future__ import annotations

from diagnose.listing.common import Truncated

HTTP_METHODS = frozenset(
    "OPTIONS GET HEAD POST PUT DELETE TRACE CONNECT PROPFIND PROPPATCH MKCOL COPY MOVE LOCK UNLOCK SEARCH CHECKOUT "
    "MERGE VERSION-CONTROL CHECKIN UNCHECKOUT MKWORKSPACE UPDATE LABEL BASELINE-CONTROL MKACTIVITY REPORT "
    "CCM_POST RPC_CONNECT NOTIFY SUBSCRIBE UNSUBSCRIBE POLL BMOVE BCOPY BDELETE BPROPFIND BPROPPATCH".split()
)
RTSP_METHODS = frozenset(
    "DESCRIBE ANNOUNCE GET_PARAMETER OPTIONS PAUSE PLAY RECORD REDIRECT SETUP SET_PARAMETER TEARDOWN".split()
)
SIP_METHODS = frozenset("ACK BYE CANCEL DO INFO INVITE MESSAGE NOTIFY OPTIONS PRACK QAUTH REFER REGISTER SPRACK "
                        "SUBSCRIBE UPDATE PUBLISH".split())

_MAX_TOKEN = 127  # a longer first word is not taken as a method or version


def _is_print(c: int) -> bool:
    return 0x20 <= c < 0x7F


def _token(data: bytes, length: int, idx: int) -> tuple[bytes, int] | None:
    """The word starting at idx and the index after the blanks that follow it; None when it is not a plain word
    (or runs past the captured bytes: `data` may be shorter than the payload's `length`)."""
    start = idx
    while idx < length:
        if idx >= len(data):
            return None
        c = data[idx]
        if c in b" \t\r\n":
            break
        if not _is_print(c):
            return None
        idx += 1
    word = data[start:idx]
    if not word or len(word) > _MAX_TOKEN:
        return None
    while idx < min(length, len(data)):
        c = data[idx]
        if c in b"\r\n":
            break
        if not _is_print(c) and c != 9:
            return None
        if c not in b" \t":
            break
        idx += 1
    return word, idx


def _starts_request_or_response(data: bytes, length: int, methods: frozenset[str], code_second: bool) -> bool:
    first = _token(data, length, 0)
    if first is None:
        return False
    word, idx = first
    if word.decode("ascii").upper() in methods:
        return True
    if code_second:
        second = _token(data, length, idx)
        if second is not None:
            code = second[0]
            return len(code) == 3 and code.isdigit()
    return False


def first_line(data: bytes, length: int) -> tuple[str, bool] | None:
    """(text, complete) of the first line, or None when it is not printable text. A line that runs past the
    captured bytes raises Truncated before anything is shown; one that ends with the payload is shown, marked cut."""
    for idx in range(length):
        if idx >= len(data):
            raise Truncated("")
        c = data[idx]
        if c == 10:
            return data[:idx].decode("ascii"), True
        if c == 13:
            if idx + 1 >= length:
                return None
            if idx + 1 >= len(data):
                raise Truncated("")
            if data[idx + 1] == 10:
                return data[:idx].decode("ascii"), True
            return None
        if not _is_print(c) and c != 9:
            return None
    return data[:length].decode("ascii"), False


def text_protocol(out: list[str], data: bytes, length: int, name: str, proto: str,
                  methods: frozenset[str] | None, code_second: bool = False) -> None:
    """`NAME` or `NAME: first line`. `data`: the captured part of the payload; `length`: the payload on the wire.
    With `methods` the line must start with one of them (or, with code_second, have a 3-digit second word);
    without, any first line is shown."""
    out.append(name)
    if methods is not None and not _starts_request_or_response(data, length, methods, code_second):
        return
    try:
        line = first_line(data, length)
    except Truncated:
        raise Truncated(proto) from None
    if line is None:
        return
    text, complete = line
    out.append(": " + text)
    if not complete:
        raise Truncated(proto)


def ssh_banner(out: list[str], data: bytes) -> None:
    """`: SSH: SSH-2.0-...` for a complete version line, nothing otherwise."""
    if not data.startswith(b"SSH-"):
        return
    end = data.find(b"\n")
    if end < 0:
        return
    line = data[:end].rstrip(b"\r")
    if not all(_is_print(c) for c in line):
        return
    out.append(": SSH: " + line.decode("ascii"))
