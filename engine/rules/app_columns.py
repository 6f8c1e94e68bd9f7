"""The application facts of the conversations the application layer knows one by one, made on demand.

A busy capture has ~10^4 HTTP/TLS conversations and thousands of UDP DNS conversations with error responses: a
dict of ~25 facts each cost ~0.1 s to fill and ~10 MB to keep, while the rules read a few facts of every flow and
the whole record of the few they flag. So `AppFacts` keeps nothing per flow: `column(key)` computes one fact over
all its flows (HTTP counts and times from the transaction store's columns, UDP DNS counts from the DNS facts table,
in numpy; rarer facts from the per-flow functions of diagnose.rules.app_facts), and `facts(conv)` makes one flow's
record facts exactly as add_app_facts writes them.

    group = AppFacts(summary.flows, rest, n)      # rest: the UDP DNS rows not held as columns (DnsRest)
    values, held = group.column("http_errors")    # over group.convs; held: the flow's facts hold the key
    group.facts(conv)                             # {"app_protocol": "http", "http_requests": 1, ...}
"""

from __future__ import annotations

from itertools import chain, repeat
from operator import attrgetter, is_, is_not, itemgetter

import numpy as np

from diagnose.rules.app_facts import _dns_udp, _flow_facts, _http, _tls


class DnsRest:
    """UDP DNS conversations whose facts vary (error responses, unanswered queries, no response, or also an
    AppFlow): their counts as columns (a DnsFactsTable's names), the lists of the few with errors or unanswered
    queries by conversation."""

    def __init__(self, convs, queries, responses, retransmissions, errors, time_max_ns, errors_seen: dict,
                 unanswered: dict):
        self.convs = np.asarray(convs, np.int64)
        self.queries, self.responses = np.asarray(queries), np.asarray(responses)
        self.retransmissions, self.errors = np.asarray(retransmissions), np.asarray(errors)
        self.time_max_ns = np.asarray(time_max_ns, np.int64)
        self.errors_seen, self.unanswered = errors_seen, unanswered

    @classmethod
    def of_table(cls, table, rows: np.ndarray) -> DnsRest:
        return cls(table.convs[rows], table.queries[rows], table.responses[rows], table.retransmissions[rows],
                   table.errors[rows], table.time_max_ns[rows], table.errors_seen, table.unanswered)

    @classmethod
    def of_facts(cls, facts: dict) -> DnsRest:
        """From conv -> DnsFacts objects."""
        items = sorted(facts.items())
        convs = [c for c, _ in items]
        counts = [[getattr(f, name) for _, f in items]
                  for name in ("queries", "responses", "retransmissions", "errors", "time_max_ns")]
        return cls(convs, *(np.array(c, np.int64) for c in counts),
                   {c: f.errors_seen for c, f in items if f.errors_seen},
                   {c: f.unanswered for c, f in items if f.unanswered})

    def index(self, conv: int) -> int:
        i = int(np.searchsorted(self.convs, conv))
        return i if i < len(self.convs) and self.convs[i] == conv else -1

    def write(self, record: dict, i: int) -> None:
        conv = int(self.convs[i])
        _dns_udp(record, int(self.queries[i]), int(self.responses[i]), int(self.retransmissions[i]),
                 int(self.errors[i]), int(self.time_max_ns[i]), self.errors_seen.get(conv),
                 self.unanswered.get(conv))


class AppFacts:
    """The application facts of AppFlows and of the UDP DNS conversations in `dns`, over flows 0..n-1 (see the
    module docstring); a lazy group of FlowRecords (add_lazy_facts)."""

    def __init__(self, flows: dict, dns: DnsRest, n: int):
        flow_convs = np.fromiter(flows, np.int64, len(flows))
        flow_convs = np.sort(flow_convs[(flow_convs >= 0) & (flow_convs < n)])
        self.flows = flows
        self.flow_convs = flow_convs
        self.flow_list = list(map(flows.__getitem__, flow_convs.tolist()))
        self.dns = dns
        in_range = dns.convs < n
        self.dns_convs = dns.convs[in_range]
        self.dns_rows = np.flatnonzero(in_range)
        self.convs = np.union1d(self.flow_convs, self.dns_convs).astype(np.int64)
        self.at_flows = np.searchsorted(self.convs, self.flow_convs)  # where each AppFlow is in convs
        self.at_dns = np.searchsorted(self.convs, self.dns_convs)
        self._columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._with: dict[str, np.ndarray] = {}  # "http"/"tls"/"dns" -> the AppFlows (flow_list indices) with it
        self._http: tuple | None = None  # (AppFlows read from the store's columns, _HttpFacts), made once
        self._dns_errors: tuple | None = None  # _dns_errors of the UDP DNS conversations, made once

    def __len__(self) -> int:
        return len(self.convs)

    def facts(self, conv: int) -> dict:
        """One flow's facts, as add_app_facts writes them into a record (the UDP DNS facts, then the AppFlow's)."""
        record: dict = {}
        i = self.dns.index(conv)
        if i >= 0:
            self.dns.write(record, i)
        flow = self.flows.get(conv)
        if flow is not None:
            _flow_facts(record, flow)
        return record

    def facts_many(self, convs: np.ndarray) -> list[dict]:
        """facts(conv) of each of these flows (all of them in self.convs), the UDP DNS rows found at once (a
        search per flow was half the time on thousands of flagged flows)."""
        convs = np.asarray(convs, np.int64)
        dns_rows = np.full(len(convs), -1, np.int64)
        if len(self.dns.convs) and len(convs):
            at = np.minimum(np.searchsorted(self.dns.convs, convs), len(self.dns.convs) - 1)
            hit = self.dns.convs[at] == convs
            dns_rows[hit] = at[hit]
        out = []
        write, get = self.dns.write, self.flows.get
        for conv, i in zip(convs.tolist(), dns_rows.tolist()):
            record: dict = {}
            if i >= 0:
                write(record, i)
            flow = get(conv)
            if flow is not None:
                _flow_facts(record, flow)
            out.append(record)
        return out

    def release(self) -> None:
        self._columns.clear()
        self._http = self._dns_errors = None

    def _flows_with(self, part: str) -> np.ndarray:
        got = self._with.get(part)
        if got is None:
            flows = self.flow_list
            has = np.fromiter(map(is_not, map(attrgetter(part), flows), repeat(None)), bool, len(flows))
            got = self._with[part] = np.flatnonzero(has)
        return got

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, held) of one fact over self.convs; values an object array where a held value is None or the
        values are not all numbers of one type."""
        got = self._columns.get(key)
        if got is None:
            got = self._columns[key] = self._column(key)
        return got

    # ---- one fact over the group -----------------------------------------------------------------------------
    def _column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        out = _Column(len(self.convs))
        at_flows, flows = self.at_flows, self.flow_list
        if key == "app_protocol":  # "dns" for UDP DNS, the AppFlow's protocol over it
            out.put(self.at_dns, np.full(len(self.dns_convs), "dns", object))
            out.put(at_flows, _objects([f.protocol for f in flows]))
        elif key.startswith("http_"):  # written by _http alone
            rest = self._flows_with("http")
            if key in HTTP_COLUMNS:
                if self._http is None:
                    self._http = _http_facts(list(map(attrgetter("http"), map(flows.__getitem__, rest.tolist()))))
                read, facts = self._http
                if facts is not None:
                    values, held = facts.column(key)
                    out.put(at_flows[rest[read]][held], values[held])
                    rest = np.delete(rest, read)
            out.put_dicts(at_flows[rest], (_facts_of(_http, flows[k].http) for k in rest), key)
        elif key.startswith("tls_"):  # written by _tls alone
            with_tls = self._flows_with("tls")
            out.put_dicts(at_flows[with_tls], (_facts_of(_tls, f.tls.session, f.chain, f)
                                               for f in (flows[k] for k in with_tls)), key)
        elif key.startswith("dns_"):  # UDP DNS facts, then an AppFlow's DNS facts over them
            self._dns_column(out, key)
            with_dns = self._flows_with("dns")
            out.put_dicts(at_flows[with_dns], (self.facts(int(self.flow_convs[k])) for k in with_dns), key)
        return out.done()

    def _dns_column(self, out: _Column, key: str) -> None:
        dns, rows, at = self.dns, self.dns_rows, self.at_dns
        counts = {"dns_queries": dns.queries, "dns_responses": dns.responses,
                  "dns_retransmissions": dns.retransmissions, "dns_errors": dns.errors}
        if key in counts:
            out.put(at, counts[key][rows].astype(np.int64))
        elif key == "dns_messages":
            out.put(at, dns.queries[rows].astype(np.int64) + dns.responses[rows].astype(np.int64))
        elif key == "dns_time_max":
            answered = dns.responses[rows] != 0
            out.put(at[answered], dns.time_max_ns[rows][answered] / 1e9)
        elif key == "dns_unanswered":
            unanswered = dns.unanswered
            out.put(at, np.fromiter((len(unanswered.get(c) or ()) for c in self.dns_convs.tolist()), np.int64,
                                    len(at)) if unanswered else np.zeros(len(at), np.int64))
        elif key in ("dns_nxdomain", "dns_error_rcode"):
            if self._dns_errors is None:
                self._dns_errors = _dns_errors(self.dns_convs, dns.errors_seen)
            nxdomain, first_rcode, seen = self._dns_errors
            if key == "dns_nxdomain":
                out.put(at, nxdomain)
            else:
                out.put(at[seen], first_rcode[seen])
        else:  # the rest of the facts of the conversations with errors or unanswered queries
            odd = [k for k, c in enumerate(self.dns_convs.tolist()) if c in dns.errors_seen or c in dns.unanswered]
            out.put_dicts(at[odd], (self._dns_facts(int(rows[k])) for k in odd), key)

    def _dns_facts(self, row: int) -> dict:
        record: dict = {}
        self.dns.write(record, row)
        return record


def _facts_of(write, *args) -> dict:
    record: dict = {}
    write(record, *args)
    return record


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


class _Column:
    """One fact over a group's flows, put in parts: (values, held), typed when every held value is a number of
    one Python type."""

    def __init__(self, n: int):
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []
        self.n = n

    def put(self, at: np.ndarray, values: np.ndarray) -> None:
        if len(at):
            self.parts.append((np.asarray(at, np.int64), values))

    def put_dicts(self, at: np.ndarray, dicts, key: str) -> None:
        """The key's value in each flow's facts (dicts, one per entry of `at`), where they hold it."""
        missing = object()
        got = [d.get(key, missing) for d in dicts]
        keep = [k for k, v in enumerate(got) if v is not missing]
        if keep:
            self.put(np.asarray(at)[keep], _objects([got[k] for k in keep]))

    def done(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.parts:  # no flow of the group holds the key: nothing kept per flow
            nothing = np.broadcast_to(np.zeros(1, bool), (self.n,))
            return nothing, nothing
        held = np.zeros(self.n, bool)
        kinds = set()
        for at, values in self.parts:
            held[at] = True
            if values.dtype == object:
                kinds.update(map(type, values.tolist()))
            else:
                kinds.add({"i": int, "u": int, "f": float, "b": bool}.get(values.dtype.kind, object))
        dtype = {int: np.int64, float: np.float64, bool: bool}.get(kinds.pop(), object) if len(kinds) == 1 \
            else object
        if dtype is not object:
            values = np.zeros(self.n, dtype)
            try:
                for at, part in self.parts:
                    values[at] = part
                return values, held
            except OverflowError:  # an integer past 64 bits (a forged Content-Length)
                pass
        values = np.empty(self.n, object)
        for at, part in self.parts:
            values[at] = part if part.dtype == object else _objects(part.tolist())
        return values, held


def _dns_errors(convs: np.ndarray, errors_seen: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(responses with rcode 3, rcode of the first error response by frame, has errors) of each conversation, from
    its (frame, name, rcode) error list (_dns_udp: sorted by frame, stable)."""
    n = len(convs)
    nxdomain, first, seen = np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, bool)
    if not errors_seen or not n:
        return nxdomain, first, seen
    got = list(map(errors_seen.get, convs.tolist()))
    which = np.flatnonzero(np.fromiter(map(bool, got), bool, n))  # the conversations with error responses
    lists = list(map(got.__getitem__, which.tolist()))
    lengths = np.fromiter(map(len, lists), np.int64, len(lists))
    flat = list(chain.from_iterable(lists))
    frames = np.fromiter(map(itemgetter(0), flat), np.int64, len(flat))
    rcodes = np.fromiter(map(itemgetter(2), flat), np.int64, len(flat))
    group = np.repeat(np.arange(len(lists)), lengths)
    nxdomain[which] = np.bincount(group, weights=rcodes == 3, minlength=len(lists)).astype(np.int64)
    order = np.lexsort((np.arange(len(flat)), frames, group))  # by group, then frame; equal frames keep their order
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    first[which] = rcodes[order[starts]]
    seen[which] = True
    return nxdomain, first, seen


# ---- HTTP: the transaction store's columns ------------------------------------------------------------------------
_HTTP_ALWAYS = ("http_requests", "http_responses", "http_errors", "http_client_errors", "http_server_errors",
                "http_truncated", "http_response_end_time")
_HTTP_FIRST_ERROR = ("http_first_error_code", "http_first_error_frame")
_HTTP_FIRST_CUT = ("http_truncated_received", "http_truncated_expected", "http_truncated_frame")
_HTTP_SLOWEST = ("http_ttfb_max", "http_ttfb_request_frame", "http_ttfb_response_frame", "http_ttfb_request_time",
                 "http_ttfb_transfer")
HTTP_COLUMNS = (*_HTTP_ALWAYS, *_HTTP_FIRST_ERROR, *_HTTP_FIRST_CUT, *_HTTP_SLOWEST)


def _http_facts(conns: list) -> tuple[np.ndarray, _HttpFacts | None]:
    """(positions in conns, their _HttpFacts) of the connections whose transactions are rows of the first one's
    store (all of them, usually) without a value past 64 bits; the others are left to _http."""
    if not conns:
        return np.zeros(0, np.int64), None
    store = conns[0].store
    same = np.fromiter(map(is_, map(attrgetter("store"), conns), repeat(store)), bool, len(conns))
    rows_of = list(map(attrgetter("rows"), conns))
    if set(map(type, rows_of)) == {int}:  # one transaction each: the usual case
        tx_rows = np.array(rows_of, np.int64)
        tx_conn = np.arange(len(conns))
    else:
        counts = np.fromiter((0 if r is None else 1 if r.__class__ is int else len(r) for r in rows_of), np.int64,
                             len(rows_of))
        tx_rows = np.fromiter(chain.from_iterable(() if r is None else (r,) if r.__class__ is int else r
                                                  for r in rows_of), np.int64, int(counts.sum()))
        tx_conn = np.repeat(np.arange(len(conns)), counts)
    if store.huge:  # a forged Content-Length past 64 bits
        huge_rows = np.fromiter((row for row, _ in store.huge), np.int64, len(store.huge))
        same[tx_conn[np.isin(tx_rows, huge_rows)]] = False
    positions = np.flatnonzero(same)
    if not len(positions):
        return positions, None
    if len(positions) < len(conns):
        keep = same[tx_conn]
        local = np.cumsum(same) - 1  # a kept connection's position among the kept ones
        tx_rows, tx_conn = tx_rows[keep], local[tx_conn[keep]]
    dropped = np.fromiter(map(attrgetter("dropped_transactions"), conns), np.int64, len(conns))[positions]
    return positions, _HttpFacts(store, tx_rows, tx_conn, len(positions), dropped)


class _HttpFacts:
    """_http's facts of many connections at once: their transactions' store rows `rows`, in order, connection
    `conn` each (nondecreasing, 0..m-1)."""

    def __init__(self, store, rows: np.ndarray, conn: np.ndarray, m: int, dropped: np.ndarray):
        from diagnose.protocols.http import TransactionStore as S

        self.m, self.conn, self.dropped = m, conn, dropped
        if len(rows):
            bits = np.frombuffer(store.bits, np.uint16)[rows].astype(np.int64)
            self.ints = {}
            for k, name in enumerate(S._INTS):
                self.ints[name] = (np.frombuffer(store.ints[k], np.int64)[rows], (bits & (1 << k)) != 0)
        else:
            bits = np.zeros(0, np.int64)
            self.ints = {name: (np.zeros(0, np.int64), np.zeros(0, bool)) for name in S._INTS}
        self.request = (bits & S._HAS_REQUEST) != 0
        self.response = (bits & S._HAS_RESPONSE) != 0
        self.truncated = (bits & S._TRUNCATED) != 0

    def _count(self, mask: np.ndarray) -> np.ndarray:
        return np.bincount(self.conn[mask], minlength=self.m).astype(np.int64)

    def _first(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(connections, their first transaction with mask)."""
        tx = np.flatnonzero(mask)
        conns, first = np.unique(self.conn[tx], return_index=True)
        return conns, tx[first]

    def _value(self, name: str, conns: np.ndarray, tx: np.ndarray):
        """A transaction value per connection (None where the transaction has none): values, held."""
        values, present = self.ints[name]
        out = np.empty(self.m, object)
        out[conns] = _objects(values[tx].tolist())
        out[conns[~present[tx]]] = None
        held = np.zeros(self.m, bool)
        held[conns] = True
        return out, held

    def column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        every = np.ones(self.m, bool)
        response = self.response
        code, has_code = self.ints["code"]
        code = np.where(has_code, code, 0)
        error = response & (code >= 400)
        if key == "http_requests":
            return self._count(self.request) + self.dropped, every
        if key == "http_responses":
            return self._count(response), every
        if key == "http_errors":
            return self._count(error), every
        if key == "http_client_errors":
            return self._count(error & (code < 500)), every
        if key == "http_server_errors":
            return self._count(error & (code >= 500)), every
        if key == "http_truncated":
            return self._count(response & self.truncated), every
        if key == "http_response_end_time":  # the latest response end
            ts, has_ts = self.ints["ts"]
            tx = np.flatnonzero(response & has_ts)
            end = np.full(self.m, np.iinfo(np.int64).min)
            np.maximum.at(end, self.conn[tx], ts[tx])
            out = np.empty(self.m, object)
            out[:] = None
            ended = np.zeros(self.m, bool)
            ended[self.conn[tx]] = True
            out[ended] = _objects((end[ended] / 1e9).tolist())
            return out, every
        if key in _HTTP_FIRST_ERROR:
            conns, tx = self._first(error)
            return self._value("code" if key == "http_first_error_code" else "frame", conns, tx)
        if key in _HTTP_FIRST_CUT:
            conns, tx = self._first(response & self.truncated)
            name = {"http_truncated_received": "body_bytes", "http_truncated_expected": "content_length",
                    "http_truncated_frame": "first_frame"}[key]
            return self._value(name, conns, tx)
        # the slowest request: the first of the largest request -> first response byte times
        request_ts, has_request_ts = self.ints["request_ts"]
        first_ts, has_first_ts = self.ints["first_ts"]
        timed = np.flatnonzero(response & self.request & has_request_ts & has_first_ts)
        ttfb = first_ts[timed] - request_ts[timed]
        conn = self.conn[timed]
        largest = np.full(self.m, np.iinfo(np.int64).min)
        np.maximum.at(largest, conn, ttfb)
        tops = timed[ttfb == largest[conn]]
        conns, first = np.unique(self.conn[tops], return_index=True)
        tx = tops[first]
        if key == "http_ttfb_max":
            return _seconds(self.m, conns, first_ts[tx] - request_ts[tx])
        if key == "http_ttfb_request_time":
            return _seconds(self.m, conns, request_ts[tx])
        if key == "http_ttfb_request_frame":
            return self._value("request_frame", conns, tx)
        if key == "http_ttfb_response_frame":
            return self._value("first_frame", conns, tx)
        if key == "http_ttfb_transfer":  # only when the response's end is known
            ts, has_ts = self.ints["ts"]
            ended = has_ts[tx]
            return _seconds(self.m, conns[ended], ts[tx][ended] - first_ts[tx][ended])
        raise KeyError(key)


def _seconds(m: int, conns: np.ndarray, ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ns / 1e9 (the float int(ns) / 1e9 gives) at conns, held there only."""
    values = np.zeros(m, np.float64)
    values[conns] = ns / 1e9
    held = np.zeros(m, bool)
    held[conns] = True
    return values, held
