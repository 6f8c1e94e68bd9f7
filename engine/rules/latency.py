"""Latency phases of a transaction: DNS lookup, TCP connect, TLS handshake, server time to first byte, transfer.

A transaction is a TCP connection carrying HTTP or TLS. Its phases come from different flows and layers:
* DNS: the lookup (query -> response, dns.time) whose A/AAAA answer holds the server's address, the latest one
  answered before the connection's first packet (and at most LOOKUP_WINDOW before it);
* connect: the handshake (SYN -> the ACK completing it; at a client-side capture point, SYN -> SYN-ACK);
* TLS: ClientHello -> first application data;
* TTFB: the slowest request of the connection, request complete -> first byte of its response (HTTP, or HTTPS
  decrypted with a key log);
* transfer: that response's first byte -> its last byte.
The largest phase is the dominant one: the latency rule names it.
"""

from __future__ import annotations

import numpy as np

T_A, T_AAAA = 1, 28  # DNS record types (diagnose.protocols.dns)
LOOKUP_WINDOW = 30.0  # seconds: an older lookup is not this connection's

LATENCY_FACTS: list[tuple[str, str, str]] = [
    ("latency_dns", "reltime", "DNS lookup of the server's name (query -> answer) before this connection"),
    ("latency_dns_name", "string", "the name looked up"),
    ("latency_connect", "reltime", "TCP connect: SYN -> handshake complete"),
    ("latency_tls", "reltime", "TLS handshake: ClientHello -> first application data"),
    ("latency_ttfb", "reltime", "server time to first byte of the slowest request"),
    ("latency_transfer", "reltime", "that response's first byte -> its last byte"),
    ("latency_total", "reltime", "sum of the phases"),
    ("latency_dominant", "string", "the largest phase: dns | connect | tls | ttfb | transfer"),
    ("latency_dominant_share", "float", "its share of the total (a fraction)"),
]

PHASES = ("dns", "connect", "tls", "ttfb", "transfer")


class DnsAnswers:
    """A/AAAA answers seen in the capture, as columns: per answer the time it was answered (its packet's ts), the
    lookup's duration (dns.time), the answered address (an id into `addresses`) and the first question's name
    (bytes in one buffer). Fed per chunk from the application layer's DNS: UDP DNS answers are read by the DNS
    scanner's kernel (dnsscan.address_answers), so no message is decoded in full and no Python object is made per
    answer; `lookup` finds the lookups of many connections at once."""

    def __init__(self, limit: int = 200_000):
        self.count = 0
        self.limit = limit
        self.addresses: list[tuple[int, int, int]] = []  # (ipv, hi, lo) per address id (made by _sorted)
        self._address_ids: dict[tuple[int, int, int], int] = {}
        self._odd_texts: dict[tuple[int, int, int], str] = {}  # answers that are not address texts (ipv 0)
        # per chunk: answered ns, dns.time ns, address (record type, hi, lo), name offset and length
        self._parts: list[tuple[np.ndarray, ...]] = []
        self._names: list[np.ndarray] = []  # the chunks' name bytes (uint8), joined at the first lookup
        self._names_size = 0
        self._index: tuple[np.ndarray, ...] | None = None  # the answers sorted by address, then answer time
        self._scratch: dict[str, np.ndarray] = {}  # the kernel's output arrays, reused from chunk to chunk

    # ---- feeding -------------------------------------------------------------------------------------------------
    def update(self, app_chunk) -> None:
        if app_chunk is None or self.count >= self.limit:
            return
        # (rows, dns.time ns, record type, hi, lo, name offsets, name lengths) in the order AppChunk.items gives the
        # messages: the parsed ones first, then each batch's kernel answers and its messages left to Python
        pieces = []
        python: list[tuple[int, str, int, str | None]] = []
        for row, msg in app_chunk.emitted["dns"]:
            if msg.response and msg.time_ns is not None:
                python.extend((row, address, msg.time_ns, msg.qname) for address in msg.answer_addresses())
        if python:
            pieces.append(self._python_answers(python))
        for batch in app_chunk.dns_batches:  # UDP DNS not decoded yet
            pieces.extend(self._batch_answers(batch))
        if not pieces:
            return
        columns = pieces[0] if len(pieces) == 1 else tuple(np.concatenate(c) for c in zip(*pieces))
        rows = columns[0]
        if not np.all(rows[1:] >= rows[:-1]):  # by row, stable (usually they are in row order already)
            order = np.argsort(rows, kind="stable")
            columns = tuple(c[order] for c in columns)
            rows = columns[0]
        self._parts.append((app_chunk.table["ts"][rows], *columns[1:]))
        self.count += len(rows)

    def add(self, address: str, answered_ns: int, time_ns: int, name: str | None) -> None:
        """One answer (for tests and callers without a chunk)."""
        _, *columns = self._python_answers([(0, address, time_ns, name)])
        self._parts.append((np.array([answered_ns], np.int64), *columns))
        self.count += 1

    def _name_bytes(self, data: np.ndarray) -> int:
        at = self._names_size
        self._names.append(data)
        self._names_size += len(data)
        return at

    def _python_answers(self, found) -> tuple[np.ndarray, ...]:
        """Answers given as (row, address text, dns.time ns, name) (messages decoded in Python: few)."""
        from diagnose.addresses import parse_address

        n = len(found)
        rows, time_ns, rtype = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64)
        hi, lo = np.empty(n, np.uint64), np.empty(n, np.uint64)
        name_off, name_len = np.zeros(n, np.int64), np.full(n, -1, np.int64)
        for k, (row, address, ns, name) in enumerate(found):
            rows[k], time_ns[k] = row, ns
            try:
                ipv, hi[k], lo[k] = parse_address(address)
                rtype[k] = T_A if ipv == 4 else T_AAAA
            except ValueError:  # not an address text: no connection's server has it (type 0)
                key = (0, 0, len(self._odd_texts))
                rtype[k], hi[k], lo[k] = key
                self._odd_texts[key] = address
            if name is not None:
                data = name.encode("utf-8", "surrogatepass")
                name_off[k], name_len[k] = self._name_bytes(np.frombuffer(data, np.uint8)), len(data)
        return rows, time_ns, rtype, hi, lo, name_off, name_len

    def _batch_answers(self, batch) -> list[tuple[np.ndarray, ...]]:
        """A DnsBatch's answers: the kernel's, then those of the messages it leaves to Python."""
        from diagnose.protocols.dns import parse_message
        from diagnose.protocols.dnsscan import A_IN_PYTHON, NAME_BYTES_PER_ROW, address_answers

        rows, time = batch.rows, batch.time
        n = len(rows)
        if not n or not (time >= 0).any():
            return []
        names, name_off, name_len, how = self._buffer("names", n * NAME_BYTES_PER_ROW, np.uint8), \
            self._buffer("name_off", n, np.int64), self._buffer("name_len", n, np.int64), \
            self._buffer("how", n, np.int64)
        cap = 4 * n  # as DnsBatch.address_answers: a message with more answers is left to Python
        ans_j, ans_type = self._buffer("ans_j", cap, np.int64), self._buffer("ans_type", cap, np.int64)
        ans_hi, ans_lo = self._buffer("ans_hi", cap, np.uint64), self._buffer("ans_lo", cap, np.uint64)
        k, used = address_answers(batch.buf, batch.table, rows, time, names, name_off, name_len, ans_j, ans_type,
                                  ans_hi, ans_lo, how)
        out = []
        if k:  # kept as the kernel gives them (a chunk costs a few array copies): read as columns by _sorted
            j = ans_j[:k]
            base = self._name_bytes(names[:used].copy())
            out.append((rows[j], time[j], ans_type[:k].copy(), ans_hi[:k].copy(), ans_lo[:k].copy(),
                        name_off[j] + base, name_len[j]))
        left = np.flatnonzero(how == A_IN_PYTHON).tolist()
        if left:
            rows_l, time_l = rows.tolist(), time.tolist()
            python = []
            for j in left:
                m = parse_message(batch.payload(j), "udp")
                python.extend((rows_l[j], address, time_l[j], m.qname) for address in m.answer_addresses())
            if python:
                out.append(self._python_answers(python))
        return out

    def _buffer(self, name: str, size: int, dtype) -> np.ndarray:
        """A scratch array of `size` entries (a view of one kept between chunks, grown when too small)."""
        got = self._scratch.get(name)
        if got is None or len(got) < size:
            got = self._scratch[name] = np.empty(max(size, 2 * len(got) if got is not None else size), dtype)
        return got[:size]

    def _ids(self, rtype: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """Address ids of answers (record type A or AAAA, 0 for an unreadable text; the address's high and low 64
        bits): each distinct address looked up once (answers name few)."""
        ids = np.empty(len(rtype), np.int32)
        v6 = rtype == T_AAAA
        ipv = np.where(rtype == T_A, 4, 0)
        for rows in (np.flatnonzero(~v6), np.flatnonzero(v6)):
            if not len(rows):
                continue
            if v6[rows[0]]:
                distinct, inverse = np.unique(np.stack([hi[rows], lo[rows]], axis=1), axis=0, return_inverse=True)
                keys = [(6, h, low) for h, low in distinct.tolist()]
            else:  # IPv4 (and unreadable texts, ipv 0): one integer each
                distinct, inverse = np.unique((ipv[rows].astype(np.uint64) << np.uint64(32)) | lo[rows],
                                              return_inverse=True)
                keys = [(key >> 32, 0, key & 0xFFFFFFFF) for key in distinct.tolist()]
            table = self._address_ids
            found = []
            for key in keys:
                got = table.get(key)
                if got is None:
                    got = table[key] = len(self.addresses)
                    self.addresses.append(key)
                found.append(got)
            ids[rows] = np.array(found, np.int32)[inverse.ravel()]
        return ids

    # ---- reading -------------------------------------------------------------------------------------------------
    def _sorted(self) -> tuple[np.ndarray, ...]:
        """(address id, answer time in float seconds, dns.time ns, name offset, name length, order, names) of every
        answer, sorted by address and then answer time (stable: answers of the same time keep the order they came
        in; order[k] is the k-th sorted answer's place in that order). Made once: the chunks' columns are dropped."""
        if self._index is None or self._parts:
            parts = []
            if self._parts:  # the chunks' answers: their addresses' ids found at once
                answered, time_ns, rtype, hi, lo, offs, lens = (np.concatenate(c) for c in zip(*self._parts))
                parts.append((answered / 1e9, time_ns, self._ids(rtype, hi, lo), offs, lens))  # as int(ts) / 1e9
            if self._index is not None:
                parts.insert(0, self._arrival(self._index))
            if parts:
                when, time_ns, ids, offs, lens = (np.concatenate(c) for c in zip(*parts))
                lens = lens.astype(np.int32)  # at most a few hundred bytes; -1: no name
            else:
                when, time_ns, offs = np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64)
                ids = lens = np.zeros(0, np.int32)
            if np.all(when[1:] >= when[:-1]):  # answers in time order (the usual capture): by address, stable
                # (a stable sort of 16-bit keys is a radix sort: few captures answer with 65536 addresses)
                order = np.argsort(ids.astype(np.uint16) if len(self.addresses) <= 1 << 16 else ids, kind="stable")
            else:
                order = np.lexsort((when, ids))
            names = np.concatenate([*self._names, np.zeros(_NAME_PAD, np.uint8)])  # padded: names cut at once
            self._names, self._parts = [names[:-_NAME_PAD]], []
            self._index = (ids[order], when[order], time_ns[order], offs[order], lens[order], order, names)
        return self._index

    @staticmethod
    def _arrival(index: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
        """(answer time, dns.time ns, address id, name offset, name length) in the order the answers came."""
        ids, when, time_ns, offs, lens, order, _ = index
        back = np.empty(len(order), np.int64)
        back[order] = np.arange(len(order))
        return when[back], time_ns[back], ids[back], offs[back], lens[back]

    def lookup(self, addresses: list[tuple[int, int, int]], which: np.ndarray, when: np.ndarray):
        """The latest lookup answered with address addresses[which[k]] at most LOOKUP_WINDOW before when[k] (the
        first such answer when several came at the same time), for every k: (found, duration in seconds, name),
        a bool, a float64 and an object array."""
        ids, times, time_ns, offs, lens, _, names = self._sorted()
        q = len(which)
        found = np.zeros(q, bool)
        duration = np.zeros(q, np.float64)
        name = np.empty(q, object)
        if not len(ids) or not q:
            return found, duration, name
        asked = np.flatnonzero(np.bincount(which, minlength=len(addresses)))  # the addresses asked about
        known = np.full(len(addresses), -1, np.int64)
        known[asked] = [self._address_ids.get(tuple(addresses[a]), -1) for a in asked.tolist()]
        qid = known[which]
        key, limit = _search_keys(ids, times, qid, when + 1e-6)
        i = np.searchsorted(key, limit, side="right") - 1  # the latest answer at most 1 us after the connection
        at = np.maximum(i, 0)
        found = (qid >= 0) & (i >= 0) & (ids[at] == qid)
        found &= ~(when - times[at] > LOOKUP_WINDOW)
        best = np.searchsorted(key, key[at], side="left")[found]  # the first answer of that time
        duration[found] = time_ns[best] / 1e9
        answers, answer_of = np.unique(best, return_inverse=True)  # many connections follow the same lookup
        name[found] = _texts(names, offs[answers], lens[answers])[answer_of.ravel()]
        return found, duration, name

    def lookup_before(self, address: str, when: float) -> tuple[float, str | None] | None:
        """(duration, name) of the latest lookup answered with `address` at most LOOKUP_WINDOW before `when`."""
        from diagnose.addresses import parse_address

        try:
            key = parse_address(address)
        except ValueError:
            return None
        found, duration, name = self.lookup([key], np.zeros(1, np.int64), np.array([when], np.float64))
        return (float(duration[0]), name[0]) if found[0] else None

    @property
    def by_address(self) -> dict[str, list[tuple[float, float, str | None]]]:
        """address -> [(answer time, duration, name)] in the order the answers came (for checks: made on demand)."""
        from diagnose.addresses import format_address

        out: dict[str, list] = {}
        index = self._sorted()
        names = index[-1]
        for when, time_ns, ids, offs, lens in (self._arrival(index),):
            for a, t, i, o, n in zip(when.tolist(), time_ns.tolist(), ids.tolist(), offs.tolist(), lens.tolist()):
                key = self.addresses[i]
                text = self._odd_texts[key] if key[0] == 0 else format_address(*key)
                out.setdefault(text, []).append((a, t / 1e9, None if n < 0 else
                                                 names[o:o + n].tobytes().decode("utf-8", "surrogatepass")))
        return out


_NAME_PAD = 129  # zero bytes after the names: a short name's window never runs past the buffer


def _search_keys(ids: np.ndarray, times: np.ndarray, qid: np.ndarray, limit: np.ndarray):
    """(one sorted int64 per answer, one per query) ordering (address, time) pairs exactly as the pairs compare:
    the address id in the high bits and the time's position among the answer times in the low bits (a positive
    float's bits order it as its value; a capture's times need ~40 bits), or, for times that do not fit, the rank
    of each time among all of them. `ids`, `times`: the answers sorted by address, then time."""
    top = max(int(ids.max(initial=0)), int(qid.max(initial=0))) + 1  # ids are below this
    if len(times) and not (np.signbit(times).any() or np.signbit(limit).any()):
        bits, lbits = times.view(np.int64), limit.view(np.int64)
        low = int(bits.min())
        span = int(bits.max()) - low + 2
        if span.bit_length() + top.bit_length() <= 62:
            # below every answer time -> 0, above -> span - 1: only the order among answer times matters
            lpos = np.clip(lbits - (low - 1), 0, span - 1)
            return (ids.astype(np.int64) << (span.bit_length())) + (bits - (low - 1)), \
                (qid << span.bit_length()) + lpos
    distinct, rank = np.unique(np.concatenate([times, limit]), return_inverse=True)
    rank = rank.ravel()
    scale = len(distinct) + 1
    return ids.astype(np.int64) * scale + rank[:len(times)], qid * scale + rank[len(times):]


def _texts(names: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The names at these spans of `names` (bytes, followed by _NAME_PAD zeros; None where the length is -1). The
    DNS scanner writes names in ASCII (other bytes escaped), so names up to 128 bytes are cut out as fixed-width
    byte strings and decoded by numpy at once; others (longer, or not plain ASCII) one at a time."""
    out = np.empty(len(offsets), object)
    lengths = lengths.astype(np.int64)
    short = np.flatnonzero((lengths >= 0) & (lengths < _NAME_PAD))
    if len(short):
        at, size = offsets[short], lengths[short]
        width = max(int(size.max()), 1)
        spans = np.lib.stride_tricks.sliding_window_view(names, width)[at]  # a copy: one row per name
        inside = np.arange(width) < size[:, None]
        spans[~inside] = 0
        plain = ~((spans >= 0x80) | (inside & (spans == 0))).any(axis=1)  # ASCII without NUL: numpy decodes it
        out[short[plain]] = spans[plain].view(f"S{width}").ravel().astype(f"U{width}")
        short = short[plain]
    rest = np.setdiff1d(np.flatnonzero(lengths >= 0), short)
    out[rest] = [names[o:o + n].tobytes().decode("utf-8", "surrogatepass")
                 for o, n in zip(offsets[rest].tolist(), lengths[rest].tolist())]
    return out


TIMED_PROTOCOLS = ("http", "http2", "tls")
# the record facts the phases are made of
LATENCY_INPUTS = ("proto", "app_protocol", "resp_h", "ts", "handshake_rtt", "synack_rtt", "tls_handshake_time",
                  "http_ttfb_max", "http_ttfb_transfer")


_PHASE_KEYS = tuple(f"latency_{k}" for k in PHASES)


_LATENCY_KEYS = ("latency_dns_name", *_PHASE_KEYS, "latency_total", "latency_dominant", "latency_dominant_share")


def add_latency_facts(records, answers: DnsAnswers) -> None:
    """Split each HTTP/TLS connection's time into phases. `records`: dict records, or a FlowRecords, whose phases
    are computed from columns for all the candidate flows at once and become fact columns (no dict per flow)."""
    from diagnose.rules.app_facts import writable_record

    if hasattr(records, "add_fact_columns"):
        _add_latency_columns(records, answers)
        return
    lookup_before = answers.lookup_before
    for conv, record in enumerate(records):
        proto, app_protocol, resp_h, ts, handshake_rtt, synack_rtt, tls_handshake_time, ttfb, ttfb_transfer = \
            map(record.get, LATENCY_INPUTS)
        if proto != "tcp" or app_protocol not in TIMED_PROTOCOLS:
            continue
        out = writable_record(records, conv)
        dns = None
        found = lookup_before(resp_h or "", ts or 0.0)
        if found is not None:
            dns, out["latency_dns_name"] = found
        if ttfb is not None:  # without a request/response the connection is not a transaction we can time
            phases = (dns, handshake_rtt or synack_rtt, tls_handshake_time, ttfb, ttfb_transfer)
            total = 0
            dominant = largest = None
            for name, key, value in zip(PHASES, _PHASE_KEYS, phases):
                if value is not None:
                    out[key] = value
                    total += value
                    if largest is None or value > largest:  # the first of equal phases, as max() picks
                        dominant, largest = name, value
            out["latency_total"] = total
            out["latency_dominant"] = dominant
            out["latency_dominant_share"] = largest / total if total > 0 else None


def _add_latency_columns(records, answers: DnsAnswers) -> None:
    """add_latency_facts over a FlowRecords's columns: the same phases, sums and choices in numpy (the same float
    operations in the same order), given to the records as fact columns."""
    from diagnose.fields import FieldType as T

    protocols, held = records.extra_column("app_protocol")
    convs = np.flatnonzero(held)
    named = protocols[convs]
    convs = convs[(named == "http") | (named == "http2") | (named == "tls")]  # TIMED_PROTOCOLS
    proto, _ = records.prepared("proto", convs)
    convs = convs[proto == "tcp"]
    if not len(convs):
        return
    ts, _ = records.prepared("ts", convs)
    when = ts / 1e9  # the record's float
    address, _, addresses = records.address_column("resp_h")
    found, dns, name = answers.lookup(addresses, address[convs], when)

    def seconds(key: str) -> tuple[np.ndarray, np.ndarray]:
        values, present = records.prepared(key, convs)
        return values / 1e9, present

    def app(key: str) -> tuple[np.ndarray, np.ndarray]:
        values, present = records.column(key, T.FLOAT)
        return values[convs], present[convs]

    handshake, has_handshake = seconds("handshake_rtt")
    synack, has_synack = seconds("synack_rtt")
    by_handshake = has_handshake & (handshake != 0)  # `handshake_rtt or synack_rtt`
    connect = np.where(by_handshake, handshake, synack)
    has_connect = by_handshake | has_synack
    tls, has_tls = app("tls_handshake_time")
    ttfb, timed = app("http_ttfb_max")  # without a request/response the connection is not a transaction we time
    transfer, has_transfer = app("http_ttfb_transfer")
    phases = [(dns, found & timed), (connect, has_connect & timed), (tls, has_tls & timed), (ttfb, timed),
              (transfer, has_transfer & timed)]
    total = np.zeros(len(convs))
    largest = np.zeros(len(convs))
    dominant = np.full(len(convs), -1)
    for k, (value, has) in enumerate(phases):
        total = np.where(has, total + value, total)
        larger = has & ((dominant < 0) | (value > largest))  # the first of equal phases, as max() picks
        largest = np.where(larger, value, largest)
        dominant = np.where(larger, k, dominant)
    keep = found | timed
    shared = timed & (total > 0)
    share = np.zeros(len(convs))
    share[shared] = largest[shared] / total[shared]
    if (timed & ~shared).any():  # no positive total: the share is None
        share = _objects(share.tolist())
        share[timed & ~shared] = None
    names = np.array(PHASES, object)[np.maximum(dominant, 0)]
    columns = {"latency_dns_name": (name, found)}
    for key, (value, has) in zip(_PHASE_KEYS, phases):
        columns[key] = (value, has)
    columns.update({"latency_total": (total, timed), "latency_dominant": (names, timed),
                    "latency_dominant_share": (share, timed)})
    records.add_fact_columns(convs[keep], {key: (value[keep], has[keep]) for key, (value, has) in columns.items()
                                           if has[keep].any()})


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


def phases_of(record: dict) -> dict[str, float | None]:
    """The phases of a record (for the HTML phase bar)."""
    return {k: record.get(f"latency_{k}") for k in PHASES}
