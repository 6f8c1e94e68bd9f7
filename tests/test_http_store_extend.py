"""TransactionStore.extend_exchanges (the kernel-read exchanges of a chunk at once) stores what append_exchange
stores one by one: the same rows, values, methods (shared texts) and URIs, after rows appended either way."""

from __future__ import annotations

from diagnose.protocols.http import HttpMessage, HttpTransaction, TransactionStore


def _exchange(k: int) -> tuple[HttpMessage, HttpMessage]:
    req = HttpMessage(True)
    req.method, req.uri, req.frame, req.ts = ("GET", "POST", "NOTAMETHOD")[k % 3], f"/{k}", 10 * k, 1_700_000_000 + k
    resp = HttpMessage(False)
    resp.code, resp.first_frame, resp.first_ts = 200 + k, 10 * k + 2, 1_700_000_100 + k
    resp.frame, resp.ts, resp.body_bytes, resp.content_length = 10 * k + 5, 1_700_000_200 + k, k << 33, k << 33
    return req, resp


def _values(req: HttpMessage, resp: HttpMessage) -> tuple:
    return (req.frame, req.ts, resp.code, resp.first_frame, resp.first_ts, resp.frame, resp.ts, resp.body_bytes,
            resp.content_length)


def test_extend_equals_appending_each():
    one, many = TransactionStore(), TransactionStore()
    for store in (one, many):
        store.append(HttpTransaction(*_exchange(99), truncated=True))
    pairs = [_exchange(k) for k in range(7)]
    rows = [one.append_exchange(req, resp) for req, resp in pairs]
    first = many.extend_exchanges([_values(*p) for p in pairs], [req.method for req, _ in pairs],
                                  [req.uri for req, _ in pairs])
    assert first == rows[0] == 1 and rows == list(range(1, 8))
    for row in range(8):
        a, b = one.get(row), many.get(row)
        for name in HttpTransaction.__slots__:
            assert getattr(a, name) == getattr(b, name), name
    assert many.methods[1] is one.methods[1] and many.methods[3] == "NOTAMETHOD"
    assert list(many.bits) == list(one.bits)
