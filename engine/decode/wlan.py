"""IEEE 802.11 data frames (with or without a radiotap header) carrying LLC/SNAP.

Management and control frames, null-data frames and protected (encrypted) frames carry no decodable network layer:
they get ST_NOT_IP. Source and destination MACs are the frame's SA and DA, whichever address fields hold them.
"""

from __future__ import annotations

from ..jit import inline
from ..packet import ENC_RADIOTAP, ENC_WLAN, ST_MALFORMED, ST_NOT_IP, ST_TRUNCATED
from . import layers as L
from .wire import be16, be48, le16, le32

RADIOTAP_F_DATAPAD = 0x20  # padding between the 802.11 header and the payload, up to a 4-byte boundary

WLAN_TYPE_DATA = 2
WLAN_FC_TO_DS = 0x01
WLAN_FC_FROM_DS = 0x02
WLAN_FC_PROTECTED = 0x40
WLAN_FC_ORDER = 0x80  # in QoS data frames: an HT Control field follows the QoS Control field


@inline
def decode_radiotap(buf, p, end, r):
    """Skip the radiotap header; the selector returned carries its Flags field (0 when absent)."""
    if p + 8 > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    length = le16(buf, p + 2)
    if buf[p] != 0 or length < 8:
        r.status |= ST_MALFORMED
        return L.DONE, p, 0, 0
    if p + length > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    r.encap |= ENC_RADIOTAP
    hdr_end = p + length
    present = le32(buf, p + 4)
    q = p + 8
    word = present
    while word & 0x80000000:  # extended presence bitmaps
        if q + 4 > hdr_end:
            return L.WLAN, hdr_end, 0, 0
        word = le32(buf, q)
        q += 4
    flags = 0
    if present & 0x1:  # TSFT: 8 bytes aligned to 8 from the header start
        q = p + ((q - p + 7) & ~7) + 8
    if present & 0x2 and q < hdr_end:
        flags = buf[q]
    return L.WLAN, hdr_end, flags, 0


@inline
def decode_wlan(buf, p, end, radiotap_flags, r):
    if p + 24 > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    fc0 = buf[p]
    fc1 = buf[p + 1]
    ftype = (fc0 >> 2) & 3
    subtype = fc0 >> 4
    ds = fc1 & (WLAN_FC_TO_DS | WLAN_FC_FROM_DS)
    a1 = be48(buf, p + 4)
    a2 = be48(buf, p + 10)
    if ftype != WLAN_TYPE_DATA:
        r.eth_dst = a1
        r.eth_src = a2
        r.status |= ST_NOT_IP
        return L.DONE, p, 0, 0
    hlen = 24
    if ds == 3:
        hlen += 6  # fourth address (wireless distribution system)
    qos = subtype & 0x8
    if qos:
        hlen += 2
        if fc1 & WLAN_FC_ORDER:
            hlen += 4
    if p + hlen > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    a3 = be48(buf, p + 16)
    if ds == 0:
        r.eth_dst = a1
        r.eth_src = a2
    elif ds == WLAN_FC_TO_DS:
        r.eth_dst = a3
        r.eth_src = a2
    elif ds == WLAN_FC_FROM_DS:
        r.eth_dst = a1
        r.eth_src = a3
    else:
        r.eth_dst = a3
        r.eth_src = be48(buf, p + 24)
    if subtype & 0x4 or fc1 & WLAN_FC_PROTECTED:  # null data (no body) / encrypted body
        r.status |= ST_NOT_IP
        return L.DONE, p, 0, 0
    amsdu = qos and (buf[p + hlen - 2 - (4 if fc1 & WLAN_FC_ORDER else 0)] & 0x80)
    if radiotap_flags & RADIOTAP_F_DATAPAD:
        hlen = (hlen + 3) & ~3
    q = p + hlen
    if amsdu:  # first A-MSDU subframe: DA, SA, length, then LLC (one row cannot hold several packets)
        q += 14
    if q + 8 > end:
        r.status |= ST_TRUNCATED
        return L.DONE, p, 0, 0
    if buf[q] != 0xAA or buf[q + 1] != 0xAA or buf[q + 2] != 0x03:
        r.status |= ST_NOT_IP
        return L.DONE, p, 0, 0
    r.encap |= ENC_WLAN
    return L.ETHERTYPE, q + 8, be16(buf, q + 6), 0
