"""`diagnose list`: one line per packet in the style of `tcpdump -n`.

    19:47:02.989867 IP 10.99.2.2.8080 > 10.99.1.2.56498: Flags [S.], seq 504131334, ack 798673883, win 65160,
        options [mss 1460,sackOK,TS val 3028936861 ecr 2544646303,nop,wscale 10], length 0      (one line)

The listing reads the frame bytes of each row of a packet table (frame columns only: ts, data, caplen, wirelen,
linktype) and prints what tcpdump prints, decoding the headers itself in Python: it must show every fragment, option
and malformed header exactly as captured, which the decoder's columns (reassembled, normalised) do not keep, and it
only runs for packets a person will read. The submodules hold the layers: link (Ethernet, cooked, loopback,
802.11, ARP), ip (IPv4/IPv6, tunnels), tcp, udp, icmp, dns, text.

Time formats (tcpdump option):
  local     HH:MM:SS.ffffff in the local time zone (default)
  utc       HH:MM:SS.ffffff in UTC
  date      YYYY-MM-DD HH:MM:SS.ffffff, local (-tttt)
  epoch     seconds.ffffff since 1970 (-tt)
  relative  since the first packet, ` HH:MM:SS.ffffff` (-ttttt)
  delta     since the previous listed packet (-ttt)
Times are shown in microseconds, truncated, like tcpdump's default precision.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from diagnose.capture import linktypes
from diagnose.listing.common import Context, ListingState, Truncated, hex_ascii_lines
from diagnose.listing.link import print_link

__all__ = ["TIME_FORMATS", "ListingState", "format_packets", "format_frame"]

TIME_FORMATS = ("local", "utc", "date", "epoch", "relative", "delta")


def format_packets(buf: np.ndarray, table: np.ndarray, *, time_format: str = "local", first_ts: int | None = None,
                   hex_ascii: bool = False, state: ListingState | None = None) -> Iterator[str]:
    """One text per row of `table` (frames in `buf`): the tcpdump-style line, followed by the -X hex/ASCII lines
    (joined with newlines) when hex_ascii is set.

    first_ts: time (ns) that `relative` counts from; default the first packet given. state: pass the same
    ListingState for every chunk of a capture, so relative sequence numbers and relative/delta times continue.
    """
    if time_format not in TIME_FORMATS:
        raise ValueError(f"time_format must be one of {', '.join(TIME_FORMATS)}, not {time_format!r}")
    if state is None:
        state = ListingState()
    if first_ts is not None:
        state.first_us = first_ts // 1000
    stamp = _Stamper(time_format, state)
    columns = (table["ts"].tolist(), table["data"].tolist(), table["caplen"].tolist(), table["wirelen"].tolist(),
               table["linktype"].tolist())
    for ts, start, caplen, wirelen, linktype in zip(*columns):
        pkt = buf[start : start + caplen].tobytes()
        yield stamp(ts // 1000) + " " + format_frame(pkt, wirelen, linktype, state, hex_ascii=hex_ascii)


def format_frame(pkt: bytes, wirelen: int, linktype: int, state: ListingState, *, hex_ascii: bool = False) -> str:
    """The text after the time stamp for one captured frame."""
    ctx = Context(state, hex_ascii)
    out: list[str] = []
    try:
        decoded = print_link(out, pkt, wirelen, linktype, ctx) is not None
    except Truncated as cut:
        decoded = True
        out.append(f" [|{cut.proto}]{cut.suffix}")
    if not decoded:
        # a link type we do not decode: say which, then show the bytes
        out.append(f"{linktypes.name(linktype)} frame (link type {linktype} not decoded), length {wirelen}\n")
        out.append("\n".join(hex_ascii_lines(pkt)))
        return "".join(out)
    if hex_ascii and ctx.link_hdr is not None and len(pkt) > ctx.link_hdr:  # nothing to dump if even that was cut
        out.append("\n" + "\n".join(hex_ascii_lines(pkt[ctx.link_hdr :])))
    return "".join(out)


class _Stamper:
    """Formats microsecond time stamps; remembers the first and previous one in the state."""

    def __init__(self, time_format: str, state: ListingState):
        self.format = time_format
        self.state = state
        self._second = None
        self._prefix = ""

    def __call__(self, us: int) -> str:
        state = self.state
        if state.first_us is None:
            state.first_us = us
        previous = state.prev_us if state.prev_us is not None else us
        state.prev_us = us
        fmt = self.format
        if fmt == "epoch":
            return f"{us // 1_000_000}.{us % 1_000_000:06d}"
        if fmt in ("relative", "delta"):
            return _delta_text(us - (state.first_us if fmt == "relative" else previous))
        second, micros = divmod(us, 1_000_000)
        if second != self._second:  # localtime/gmtime once per second of capture, not per packet
            self._second = second
            t = time.gmtime(second) if fmt == "utc" else time.localtime(second)
            clock = f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            self._prefix = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d} {clock}" if fmt == "date" else clock
        return f"{self._prefix}.{micros:06d}"


def _delta_text(delta_us: int) -> str:
    """tcpdump's signed hours:minutes:seconds; whole days are dropped as tcpdump does."""
    sign = "-" if delta_us < 0 else " "
    seconds, micros = divmod(abs(delta_us), 1_000_000)
    return f"{sign}{seconds // 3600 % 24:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{micros:06d}"
