"""Capture facts (`capture.*`): what the file is, and the artefacts of how it was captured.

Loss and retransmission diagnoses lean on these to say "capture artefact, not network loss":
* duplicated frames: the same captured bytes seen again within DUPLICATE_WINDOW_NS (a SPAN port or bridge copying a
  packet twice). Real retransmissions are never byte-identical within that time: the sender's IP ID or TCP timestamp
  changes.
* offload super-segments: TCP segments longer than the MSS the peer announced, or IP packets longer than an Ethernet
  MTU of 1500 bytes: the capture host saw them before TSO/GSO split them (or after GRO merged them).
* bad checksums confined to the packets one host sent: checksum offload at the capture host, not corruption.
* snaplen cuts, interface drops (pcapng statistics), one-sided TCP flows (asymmetric capture).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diagnose.capture import linktypes
from diagnose.capture.reader import CaptureInfo
from diagnose.jit import inline, kernel
from diagnose.packet import ST_IP_FRAGMENT, ST_LINK_UNDECODED, ST_MALFORMED, ST_TRUNCATED

DUPLICATE_WINDOW_NS = 5_000_000  # "a few ms": SPAN/bridge copies arrive microseconds apart
ETHERNET_MTU = 1500
_DUP_SLOTS = 1 << 16

# Checksum result bits (from decode.verify_checksums)
CSUM_IP_BAD = 1
CSUM_L4_BAD = 2


@inline
def _byte_word(buf, p):
    """The 8 bytes at buf[p:] as a little-endian uint64, read byte by byte."""
    w = np.uint64(0)
    for k in range(7, -1, -1):
        w = (w << np.uint64(8)) | np.uint64(buf[p + k])
    return w


@inline
def _mix(h):
    """Spread every bit over the word (murmur3's finaliser): the table slot is the hash's low bits."""
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@inline
def _frame_hash(buf, words, start, length):
    """64-bit hash of a frame's bytes, 8 bytes a step in four independent lanes (a byte-serial hash waits on one
    multiply per byte); only frames that may be copies are hashed whole (see KEY_BYTES). The words come from
    two aligned loads where `words` (buf viewed as little-endian uint64) reaches, else byte by byte: the same
    values, so a frame hashes alike wherever it lies."""
    p = np.uint64(0x100000001B3)
    a = np.uint64(0xCBF29CE484222325)
    b = np.uint64(0x84222325CBF29CE4)
    c = np.uint64(0x9E3779B97F4A7C15)
    d = np.uint64(0xC2B2AE3D27D4EB4F)
    nw = length >> 3
    q = start >> 3
    i = 0
    if q + nw < words.shape[0]:
        r = np.uint64((start & 7) * 8)
        if r == 0:
            while i + 4 <= nw:
                a = (a ^ words[q + i]) * p
                b = (b ^ words[q + i + 1]) * p
                c = (c ^ words[q + i + 2]) * p
                d = (d ^ words[q + i + 3]) * p
                i += 4
            while i < nw:
                a = (a ^ words[q + i]) * p
                i += 1
        else:
            up = np.uint64(64) - r
            while i + 4 <= nw:
                w0, w1, w2 = words[q + i], words[q + i + 1], words[q + i + 2]
                w3, w4 = words[q + i + 3], words[q + i + 4]
                a = (a ^ ((w0 >> r) | (w1 << up))) * p
                b = (b ^ ((w1 >> r) | (w2 << up))) * p
                c = (c ^ ((w2 >> r) | (w3 << up))) * p
                d = (d ^ ((w3 >> r) | (w4 << up))) * p
                i += 4
            while i < nw:
                a = (a ^ ((words[q + i] >> r) | (words[q + i + 1] << up))) * p
                i += 1
    else:
        while i + 4 <= nw:
            k = start + 8 * i
            a = (a ^ _byte_word(buf, k)) * p
            b = (b ^ _byte_word(buf, k + 8)) * p
            c = (c ^ _byte_word(buf, k + 16)) * p
            d = (d ^ _byte_word(buf, k + 24)) * p
            i += 4
        while i < nw:
            a = (a ^ _byte_word(buf, start + 8 * i)) * p
            i += 1
    for k in range(start + 8 * nw, start + length):
        b = (b ^ np.uint64(buf[k])) * p
    h = _mix(a) ^ (_mix(b) * np.uint64(3)) ^ (_mix(c) * np.uint64(5)) ^ (_mix(d) * np.uint64(7))
    return _mix(h ^ np.uint64(length))


# _scan_chunk's per-chunk totals (out[...]): the capinfos counts come from the same loop over the rows, which reads
# each row once instead of a dozen strided numpy passes over the chunk's rows
T_WIRE, T_CAPTURED, T_TS_MAX, T_TIME_BACK, T_SNAPLEN_CUT, T_TRUNCATED, T_MALFORMED, T_UNDECODED, T_LINK_MIXED = range(9)


# The duplicate test looks at a frame's bytes in two steps. A key of its length and first KEY_BYTES bytes goes into a
# small table (one frame per slot, the latest); only a frame whose key matches a frame still in the window, or that
# lands in a slot whose earlier frame may still be copied ("hot"), is hashed whole and looked up in the table of whole
# hashes. A copy has its original's key, so it is always hashed; a frame that is not a copy almost never is: the
# first 64 bytes hold the addresses, IP ID, sequence numbers (and over IPv4 the TCP checksum). On the 1M-packet
# benchmark 1.1% of frames are hashed whole, and the scan reads ~1/10 of the captured bytes.
KEY_BYTES = 64
_KEY_SLOTS = 1 << 13  # 256 KB: a window of the benchmark holds ~50 frames; a busier one makes more slots hot
_HASHED = -1  # key-table mark instead of a frame number: the frame's whole hash is in the hash table
# A frame can still be copied while a later frame may come within DUPLICATE_WINDOW_NS after it; allowing the clock
# to step back up to one window, that is while it is no older than two windows before the newest frame.
LIVE_NS = 2 * DUPLICATE_WINDOW_NS
FETCH_AHEAD = 12  # frames


@inline
def _frame_key(buf, words, start, length):
    """64-bit key of a frame's length and first KEY_BYTES bytes: two lanes, read as in _frame_hash (a frame gets the
    same key wherever it lies)."""
    m = min(length, KEY_BYTES)
    nw = m >> 3
    q = start >> 3
    p = np.uint64(0x100000001B3)
    a = np.uint64(length) * np.uint64(0x9E3779B97F4A7C15)
    b = np.uint64(0xCBF29CE484222325)
    i = 0
    if q + nw < words.shape[0]:
        r = np.uint64((start & 7) * 8)
        if r == 0:
            while i + 2 <= nw:
                a = (a ^ words[q + i]) * p
                b = (b ^ words[q + i + 1]) * p
                i += 2
        else:
            up = np.uint64(64) - r
            while i + 2 <= nw:
                w1 = words[q + i + 1]
                a = (a ^ ((words[q + i] >> r) | (w1 << up))) * p
                b = (b ^ ((w1 >> r) | (words[q + i + 2] << up))) * p
                i += 2
    else:
        while i + 2 <= nw:
            a = (a ^ _byte_word(buf, start + 8 * i)) * p
            b = (b ^ _byte_word(buf, start + 8 * i + 8)) * p
            i += 2
    for k in range(start + 8 * i, start + m):  # an odd last word and the last bytes, byte by byte
        b = (b ^ np.uint64(buf[k])) * p
    return _mix(a ^ (b * np.uint64(0xC2B2AE3D27D4EB4F)))


@inline
def _remember(dup_hash, dup_ts, h, ts):
    """Put a frame hashed after later frames into the hash table: it does not displace a later frame."""
    s = np.int64(h & np.uint64(dup_hash.shape[0] - 1))
    if dup_ts[s] <= ts:
        dup_hash[s] = h
        dup_ts[s] = ts


@kernel
def _scan_chunk(buf, words, table, keys, key_state, dup_hash, dup_ts, out_dup, prev_ts, totals):
    """What reads only the chunk, in order: mark duplicated frames (a copy of a frame within DUPLICATE_WINDOW_NS,
    by hash of its bytes) and count the chunk's capinfos totals (T_*); `prev_ts` is the timestamp before the
    chunk's first row. `keys` is the key table (see KEY_BYTES): rows of key, ts, frame number from 0 (or _HASHED),
    hot-until ts; key_state = the newest timestamp so far, the number of this chunk's first frame, a sink. A frame
    of an earlier chunk left unhashed was too old to be copied any more (older than LIVE_NS before the newest frame
    when its chunk ended): verdicts equal hashing every frame while the clock never steps back more than a window.
    The pass runs this ahead, on the decoding thread, while the buffer is still in cache (CaptureFacts.prepare)."""
    mask = dup_hash.shape[0] - 1
    kmask = keys.shape[0] - 1
    newest = key_state[0]
    base = key_state[1]
    ahead = 0
    n = table.shape[0]
    wire = captured = back = cut = truncated = malformed = undecoded = mixed = 0
    ts_max = table[0].ts
    link0 = table[0].linktype
    prev = prev_ts
    for i in range(table.shape[0]):
        r = table[i]
        wire += r.wirelen
        captured += r.caplen
        if r.ts > ts_max:
            ts_max = r.ts
        if r.ts < prev:
            back += 1
        prev = r.ts
        if r.caplen < r.wirelen:
            cut += 1
        if r.status & ST_TRUNCATED:
            truncated += 1
        if r.status & ST_MALFORMED:
            malformed += 1
        if r.status & ST_LINK_UNDECODED:
            undecoded += 1
        if r.linktype != link0:
            mixed = 1
        if r.ts > newest:
            newest = r.ts
        if i + FETCH_AHEAD < n:  # start loading a later frame's first bytes: the key's loads then wait less
            f = table[i + FETCH_AHEAD].data
            ahead += buf[f] + buf[min(f + KEY_BYTES - 1, buf.shape[0] - 1)]
        k = _frame_key(buf, words, r.data, r.caplen)
        ks = np.int64(k & np.uint64(kmask))
        k_ts = keys[ks, 1]
        k_row = keys[ks, 2]
        hit = np.uint64(keys[ks, 0]) == k and r.ts - k_ts <= DUPLICATE_WINDOW_NS and r.ts >= k_ts
        if k_ts + LIVE_NS >= newest:  # the frame leaving this slot may still be copied
            if k_row >= base:
                e = table[k_row - base]
                eh = _frame_hash(buf, words, e.data, e.caplen)
                _remember(dup_hash, dup_ts, eh, k_ts)
            if k_ts + DUPLICATE_WINDOW_NS > keys[ks, 3]:
                keys[ks, 3] = k_ts + DUPLICATE_WINDOW_NS
        out_dup[i] = False
        row = base + i
        if hit or r.ts <= keys[ks, 3]:
            h = _frame_hash(buf, words, r.data, r.caplen)
            s = np.int64(h & np.uint64(mask))
            out_dup[i] = dup_hash[s] == h and r.ts - dup_ts[s] <= DUPLICATE_WINDOW_NS and r.ts >= dup_ts[s]
            dup_hash[s] = h
            dup_ts[s] = r.ts
            row = _HASHED
        keys[ks, 0] = np.int64(k)
        keys[ks, 1] = r.ts
        keys[ks, 2] = row
    # the chunk's buffer is about to go: hash the frames that may still be copied by a later chunk's frames
    for i in range(table.shape[0]):
        r = table[i]
        if r.ts + LIVE_NS >= newest:
            ks = np.int64(_frame_key(buf, words, r.data, r.caplen) & np.uint64(kmask))
            if keys[ks, 2] == base + i:
                _remember(dup_hash, dup_ts, _frame_hash(buf, words, r.data, r.caplen), r.ts)
                keys[ks, 2] = _HASHED
    key_state[0] = newest
    key_state[1] = base + table.shape[0]
    key_state[2] = ahead  # (only so that the loads ahead are not dropped)
    totals[T_WIRE] = wire
    totals[T_CAPTURED] = captured
    totals[T_TS_MAX] = ts_max
    totals[T_TIME_BACK] = back
    totals[T_SNAPLEN_CUT] = cut
    totals[T_TRUNCATED] = truncated
    totals[T_MALFORMED] = malformed
    totals[T_UNDECODED] = undecoded
    totals[T_LINK_MIXED] = mixed


@kernel
def _oversize(table, conv_mss, out_big):
    """Mark offload super-segments: IP datagrams longer than Ethernet's MTU, or TCP payloads longer than the MSS
    the peer announced (conv_mss[conv, dir], kept across chunks; needs the flow columns)."""
    for i in range(table.shape[0]):
        r = table[i]
        big = False
        if r.ipv != 0 and (r.status & ST_IP_FRAGMENT) == 0 and r.ip_len > ETHERNET_MTU and r.linktype == 1:
            big = True
        c = r.conv
        if r.ip_proto == 6 and r.l4_off >= 0 and c >= 0 and c < conv_mss.shape[0]:
            if (r.tcp_flags & 0x02) and (r.tcp_opts & 1):
                conv_mss[c, r.dir] = r.opt_mss
            peer = conv_mss[c, 1 - r.dir]
            if peer > 0 and r.payload_len > peer:
                big = True
        out_big[i] = big


def _words(buf: np.ndarray) -> np.ndarray:
    """The chunk buffer as aligned little-endian uint64 words for _frame_hash (empty when it cannot be viewed so:
    the hash then reads bytes)."""
    if buf.ctypes.data % 8 or not buf.flags.c_contiguous or not np.little_endian:
        return np.empty(0, np.uint64)
    return buf[: buf.shape[0] // 8 * 8].view(np.uint64)


def _empty_key_table() -> tuple[np.ndarray, np.ndarray]:
    """_scan_chunk's key table (columns key, ts, frame number, hot-until) and key state, before any frame."""
    keys = np.zeros((_KEY_SLOTS, 4), np.int64)
    keys[:, 1] = np.iinfo(np.int64).min // 2  # far before any frame: never within a window, never live
    keys[:, 2] = _HASHED
    keys[:, 3] = np.iinfo(np.int64).min
    return keys, np.array([np.iinfo(np.int64).min, 0, 0], np.int64)


@dataclass
class CaptureFacts:
    """Accumulates capture facts chunk by chunk; `summary()` gives the capinfos-like report."""

    verify_checksums: bool = True
    packets: int = 0
    wire_bytes: int = 0
    captured_bytes: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    out_of_order_time: int = 0  # frames whose timestamp is earlier than the previous frame's
    snaplen_cut: int = 0
    duplicates: int = 0
    duplicate_frames: list[int] = field(default_factory=list)
    oversize: int = 0
    oversize_frames: list[int] = field(default_factory=list)
    oversize_sources: dict[str, int] = field(default_factory=dict)
    bad_checksums: int = 0
    bad_checksum_sources: dict[str, int] = field(default_factory=dict)
    truncated_headers: int = 0
    malformed: int = 0
    undecoded: int = 0
    link_frames: dict[int, int] = field(default_factory=dict)
    keep_frames: int = 100  # how many example frame numbers to keep per fact

    def __post_init__(self):
        self._dup_hash = np.zeros(_DUP_SLOTS, np.uint64)
        self._dup_ts = np.zeros(_DUP_SLOTS, np.int64)
        self._keys, self._key_state = _empty_key_table()
        self._conv_mss = np.zeros((1024, 2), np.int64)
        self._prev_ts: int | None = None

    def prepare(self, chunk) -> None:
        """The part of update that reads only the chunk (duplicates, capinfos counts, checksums), for the pass to
        run ahead (diagnose.pipeline.Pass): it must see the chunks in order, as update does. update finds the
        results in chunk.extra. The duplicate table and the time order belong to this part alone."""
        chunk.extra.update(self._chunk_inputs(chunk.buf, chunk.table))

    def _chunk_inputs(self, buf: np.ndarray, table: np.ndarray) -> dict:
        from diagnose.decode import verify_checksums

        n = len(table)
        inputs = {"duplicates": np.zeros(n, np.bool_), "totals": np.zeros(9, np.int64)}
        if n:
            first_ts = int(table[0]["ts"])
            prev_ts = self._prev_ts if self._prev_ts is not None else first_ts
            _scan_chunk(buf, _words(buf), table, self._keys, self._key_state, self._dup_hash, self._dup_ts,
                        inputs["duplicates"], prev_ts, inputs["totals"])
            self._prev_ts = int(table[n - 1]["ts"])
        if self.verify_checksums:
            inputs["checksums"] = verify_checksums(buf, table)
        return inputs

    def update(self, buf: np.ndarray, table: np.ndarray, n_convs: int, prepared: dict | None = None) -> None:
        """Account one chunk; `prepared` = the chunk's extra after prepare(chunk), if it ran."""
        from diagnose.addresses import format_address

        n = len(table)
        if not n:
            return
        if not prepared or "totals" not in prepared:
            prepared = self._chunk_inputs(buf, table)
        if n_convs > len(self._conv_mss):
            grown = np.zeros((max(n_convs, 2 * len(self._conv_mss)), 2), np.int64)
            grown[: len(self._conv_mss)] = self._conv_mss
            self._conv_mss = grown
        dup = prepared["duplicates"]
        big = np.zeros(n, np.bool_)
        _oversize(table, self._conv_mss, big)
        first_ts = int(table[0]["ts"])
        wire, captured, ts_max, back, cut, truncated, malformed, undecoded, mixed = prepared["totals"].tolist()
        self.packets += n
        self.wire_bytes += wire
        self.captured_bytes += captured
        self.first_ts = first_ts if self.first_ts is None else self.first_ts
        self.last_ts = ts_max if self.last_ts is None else max(self.last_ts, ts_max)
        self.out_of_order_time += back
        self.snaplen_cut += cut
        self.truncated_headers += truncated
        self.malformed += malformed
        self.undecoded += undecoded
        if not mixed:  # the usual case: one interface, or all of one type
            lt = int(table[0]["linktype"])
            self.link_frames[lt] = self.link_frames.get(lt, 0) + n
        else:
            for lt, count in zip(*np.unique(table["linktype"], return_counts=True)):
                self.link_frames[int(lt)] = self.link_frames.get(int(lt), 0) + int(count)

        duplicates = int(dup.sum())
        if duplicates:
            self.duplicates += duplicates
            self._keep(self.duplicate_frames, table["frame"][dup])
        oversize = int(big.sum())
        if oversize:
            self.oversize += oversize
            self._keep(self.oversize_frames, table["frame"][big])
            for row in table[big][: self.keep_frames]:
                key = format_address(row["ipv"], row["src_hi"], row["src_lo"])
                self.oversize_sources[key] = self.oversize_sources.get(key, 0) + 1

        if self.verify_checksums:
            bad = (prepared["checksums"] & (CSUM_IP_BAD | CSUM_L4_BAD)) != 0
            n_bad = int(bad.sum())
            if n_bad:
                self.bad_checksums += n_bad
                self._count_sources(self.bad_checksum_sources, table[bad])

    def _keep(self, into: list[int], frames: np.ndarray) -> None:
        room = self.keep_frames - len(into)
        if room > 0:
            into.extend(int(f) for f in frames[:room])

    @staticmethod
    def _count_sources(into: dict[str, int], rows: np.ndarray) -> None:
        from diagnose.addresses import format_address

        if not len(rows):
            return
        keys = np.stack([rows["ipv"].astype(np.uint64), rows["src_hi"], rows["src_lo"]], axis=1)
        uniq, counts = np.unique(keys, axis=0, return_counts=True)
        for (ipv, hi, lo), count in zip(uniq, counts):
            key = format_address(int(ipv), int(hi), int(lo))
            into[key] = into.get(key, 0) + int(count)

    # -- summary --------------------------------------------------------------------------------------------------
    def checksum_offload_host(self) -> str | None:
        """The one host whose sent packets hold every bad checksum, if that explains them all."""
        if self.bad_checksums and len(self.bad_checksum_sources) == 1:
            return next(iter(self.bad_checksum_sources))
        return None

    def summary(self, info: CaptureInfo, conversations: np.ndarray | None = None) -> dict:
        duration = (self.last_ts - self.first_ts) / 1e9 if self.packets else 0.0
        drops = sum(i.stats.get("ifdrop", 0) for i in info.interfaces)
        os_drops = sum(i.stats.get("osdrop", 0) for i in info.interfaces)
        one_sided = _one_sided_tcp(conversations) if conversations is not None else []
        return {
            "file": info.path,
            "format": info.format + (" (gzip)" if info.compressed else ""),
            "version": f"{info.version[0]}.{info.version[1]}",
            "timestamp_resolution": info.resolution,
            "link_types": sorted({linktypes.name(i.linktype) for i in info.interfaces}),
            "interfaces": [
                {
                    "index": i.index,
                    "name": i.name,
                    "description": i.description,
                    "link_type": linktypes.describe(i.linktype),
                    "snaplen": i.snaplen,
                    "ts_units_per_second": i.tsresol_units,
                    "packets": None,
                    "dropped": i.stats.get("ifdrop"),
                    "os_dropped": i.stats.get("osdrop"),
                    "received": i.stats.get("ifrecv"),
                }
                for i in info.interfaces
            ],
            "packets": self.packets,
            "first_time": _iso(self.first_ts),
            "last_time": _iso(self.last_ts),
            "first_time_epoch": None if self.first_ts is None else self.first_ts / 1e9,
            "last_time_epoch": None if self.last_ts is None else self.last_ts / 1e9,
            "duration_s": duration,
            "data_bytes": self.wire_bytes,
            "captured_bytes": self.captured_bytes,
            "data_rate_Bps": self.wire_bytes / duration if duration > 0 else None,
            "data_rate_bps": self.wire_bytes * 8 / duration if duration > 0 else None,
            "packet_rate_pps": self.packets / duration if duration > 0 else None,
            "average_packet_size": self.wire_bytes / self.packets if self.packets else None,
            "snaplen": max((i.snaplen for i in info.interfaces), default=None),
            "snaplen_cut": self.snaplen_cut,
            "interface_drops": drops,
            "os_drops": os_drops,
            "duplicates": self.duplicates,
            "duplicate_frames": self.duplicate_frames,
            "oversize_segments": self.oversize,
            "oversize_frames": self.oversize_frames,
            "oversize_sources": self.oversize_sources,
            "bad_checksums": self.bad_checksums if self.verify_checksums else None,
            "bad_checksum_sources": self.bad_checksum_sources,
            "checksum_offload_host": self.checksum_offload_host(),
            "one_sided_flows": len(one_sided),
            "one_sided_streams": one_sided[: self.keep_frames],
            "time_order_violations": self.out_of_order_time,
            "truncated_headers": self.truncated_headers,
            "malformed": self.malformed,
            "undecoded_frames": self.undecoded,
            "truncated_file": info.truncated,
            "comments": sum(len(v) for v in info.comments.values()),
            "decryption_secrets": len(info.secrets),
            "warnings": list(info.warnings),
        }


def _one_sided_tcp(convs: np.ndarray) -> list[int]:
    """TCP streams seen in one direction only whose sender acknowledges or sends data: an asymmetric capture.

    A lone SYN and its retries (S0) is not counted: it is an unanswered connection, not a capture artefact.
    """
    from diagnose.flows import F_ACK, F_DATA, PROTO_TCP

    tcp = convs[convs["proto"] == PROTO_TCP]
    one_way = (tcp["pkts"][:, 0] == 0) | (tcp["pkts"][:, 1] == 0)
    talks = ((tcp["flags"][:, 0] | tcp["flags"][:, 1]) & np.uint8(F_ACK | F_DATA)) != 0
    return [int(s) for s in tcp[one_way & talks]["stream"]]


def _iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    import datetime as dt

    sec, frac = divmod(ns, 1_000_000_000)
    return dt.datetime.fromtimestamp(sec, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{frac:09d} UTC"
