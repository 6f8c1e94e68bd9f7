"""HTTP transactions kept as columns give back what HttpTransaction holds: every value, None where absent, values
past 64 bits, several connections sharing one store in arrival order, and the connection's transaction limit."""

from __future__ import annotations

from diagnose.protocols.http import HttpConnection, HttpMessage, HttpTransaction, TransactionStore


def _message(is_request: bool, **values) -> HttpMessage:
    msg = HttpMessage(is_request)
    for name, value in values.items():
        setattr(msg, name, value)
    return msg


def _same(a: HttpTransaction, b: HttpTransaction) -> None:
    for name in HttpTransaction.__slots__:
        assert getattr(a, name) == getattr(b, name), name
        assert type(getattr(a, name)) is type(getattr(b, name)), name


def test_store_gives_back_every_value():
    req = _message(True, method="GET", uri="/x", frame=3, ts=1_700_000_000_123_456_789)
    resp = _message(False, code=206, frame=9, ts=1_700_000_000_223_456_789, first_frame=5,
                    first_ts=1_700_000_000_200_000_000, body_bytes=12, content_length=1 << 70)
    cases = [HttpTransaction(req, resp), HttpTransaction(req, resp, truncated=True), HttpTransaction(None, resp),
             HttpTransaction(req, None), HttpTransaction(_message(True), _message(False, code=0, body_bytes=0))]
    store = TransactionStore()
    rows = [store.append(tx) for tx in cases]
    for row, tx in zip(rows, cases):
        _same(store.get(row), tx)
    assert store.get(0).content_length == 1 << 70
    assert store.get(0).ttfb_ns == 1_700_000_000_200_000_000 - 1_700_000_000_123_456_789


class _Ctx:
    def __init__(self):
        self.http_store = TransactionStore()


def test_connections_share_the_emitters_store_and_keep_their_own_rows():
    ctx = _Ctx()
    a, b = HttpConnection(ctx), HttpConnection(ctx, max_transactions=2)
    made = {id(a): [], id(b): []}
    for k in range(5):
        for conn in (a, b):
            tx = HttpTransaction(_message(True, method="GET", uri=f"/{k}", frame=k, ts=k), None)
            conn.record(tx)
            made[id(conn)].append(tx)
    assert a.store is b.store is ctx.http_store
    assert [t.uri for t in a.transactions] == ["/0", "/1", "/2", "/3", "/4"]
    assert [t.uri for t in b.transactions] == ["/0", "/1"] and b.dropped_transactions == 3
    for got, tx in zip(a.transactions, made[id(a)]):
        _same(got, tx)
    assert HttpConnection(object()).transactions == []  # an emitter without a store: the connection has its own
