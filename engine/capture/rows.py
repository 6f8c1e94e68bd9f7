"""How a capture reader starts a packet row in the reused chunk table.

The reader writes the record columns and clears the flow columns; the decoder resets every decode column itself
(decode.walk.reset_row) before it fills them. Copying a whole 'absent' row instead wrote all 320 bytes of every row
twice per packet (~60 ms of the 1M-packet benchmark).
"""

from __future__ import annotations

from diagnose.jit import inline


@inline
def start_row(r, frame, ts, caplen, wirelen, iface, linktype, data):
    r.frame = frame
    r.ts = ts
    r.caplen = caplen
    r.wirelen = wirelen
    r.iface = iface
    r.linktype = linktype
    r.data = data
    r.conv = -1
    r.stream = -1
    r.outer_stream = -1
    r.dir = 0
