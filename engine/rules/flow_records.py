"""The flow records of a diagnosis, without holding one dict per flow.

A busy capture has tens of thousands of flows and a rule reads a few dozen facts of each: the rules read columns
(one array per fact they use, straight from diagnose.conn.record's columns), and a dict record is made only for the
flows a finding names (its message, evidence and links read the record).

    records = FlowRecords(analysis)            # a Sequence: len(records), records[conv] (a dict; facts it lacks read as None), iteration
    records.extra_for(conv)["http_requests"] = 3   # application/latency facts: kept for the flows that have them
    records.add_fact_columns(convs, {"dns_queries": counts, "latency_dns_name": [ABSENT, "a.example"]})  # or columns
    records.add_lazy_facts(group)              # or made on demand: group.facts(conv), group.column(key)
    records.load(convs)                        # make the records of many flows at once (one block of columns each)
    values, present = records.column("syn_count", FieldType.UINT)

Values and presence follow what a dict record holds: a fact the record lacks or holds as None is absent; times and
durations are integer nanoseconds computed from the record's float seconds, so a filter sees the same number either
way.
"""

from __future__ import annotations

import dataclasses
import threading
from operator import itemgetter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from diagnose.conn.record import BLOCK, BOOL, FIELDS, KINDS, NS, FLOAT, STR, ADDR, ENDPOINT, MICROS, UINT, \
    FlowAnalysis, FlowColumns, StringTable, _ROW, _address, _values, column_records
from diagnose.fields import FieldType as T
from diagnose.rules.flow_fields import SECONDS_TYPES, Facts, typed_values

_TCP_ONLY = {name for name, _, tcp_only in FIELDS if tcp_only}
ABSENT = object()  # in add_fact_columns' lists: the flow's record does not hold the key
# flows per block of the rules' sweep (prepare): twice a block's 2,048 cost ~2 MB more while it runs (records come
# well below the pass's peak) and ~10% less time (a block costs a few hundred numpy calls whatever its size);
# beyond that the [flow, field] matrix outgrows the caches and it gets slower again
_SWEEP = 2 * BLOCK


class FactColumns:
    """Facts of some flows as columns: `convs` sorted, per key (values, has) with has None when every flow holds
    the key. Numbers are typed arrays when every held value has the same Python type (int, float or bool) and read
    back as that type; other keys are object arrays. A flow's facts come out in the order of the keys."""

    def __init__(self, convs, columns: dict):
        convs = np.asarray(convs, np.int64)
        order = None if np.all(convs[1:] > convs[:-1]) else np.argsort(convs, kind="stable")
        self.convs = convs if order is None else convs[order]
        self.columns: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for key, values in columns.items():
            values, has = _fact_column(values)
            self.columns[key] = (values, has) if order is None else (values[order], None if has is None else has[order])

    def index(self, conv: int) -> int:
        i = int(np.searchsorted(self.convs, conv))
        return i if i < len(self.convs) and self.convs[i] == conv else -1

    def find(self, convs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices into convs, rows) of the flows of `convs` that this group holds."""
        return find_sorted(self.convs, convs)

    def rows(self, rows: np.ndarray) -> list[dict]:
        """The facts of these rows, a dict each (typed values read back as Python numbers)."""
        out = [{} for _ in range(len(rows))]
        for key, (values, has) in self.columns.items():
            taken = values[rows].tolist()
            if has is None:
                for d, v in zip(out, taken):
                    d[key] = v
            else:
                for d, v, h in zip(out, taken, has[rows].tolist()):
                    if h:
                        d[key] = v
        return out


def find_sorted(held: np.ndarray, convs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(indices into convs, positions in held) of the flows of `convs` found in the sorted array `held`."""
    if not len(held) or not len(convs):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = np.minimum(np.searchsorted(held, convs), len(held) - 1)
    hit = np.flatnonzero(held[rows] == convs)
    return hit, rows[hit]


def _fact_column(values) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(values, np.ndarray):
        return values, None
    if isinstance(values, tuple):  # (values, held) arrays already
        values, has = values
        return values, None if has is None or has.all() else has
    has = [v is not ABSENT for v in values]
    held = [v for v in values if v is not ABSENT]
    kinds = {v.__class__ for v in held}
    dtype = {int: np.int64, float: np.float64, bool: bool}.get(kinds.pop(), object) if len(kinds) == 1 else object
    if dtype is object:
        out = np.empty(len(values), object)
        out[:] = [None if v is ABSENT else v for v in values]
    else:
        out = np.zeros(len(values), dtype)
        mask = np.array(has, bool)
        out[mask] = held
    return out, None if all(has) else np.array(has, bool)
_TEXT_KINDS = (STR, ADDR, ENDPOINT, MICROS)
_NAMES = [name for name, _, _ in FIELDS]
# what names a flow and places it in time (a finding's FlowRef, start and end): in every record load makes
IDENTITY_KEYS = ("stream", "proto", "client", "server", "first_frame", "last_frame", "orig_h", "resp_h", "ts",
                 "duration")
_COMMON_NAMES = [name for name, _, tcp_only in FIELDS if not tcp_only and name != "end"] + ["end"]  # record order
_NOT_HELD = object()  # a fact the record does not hold (a TCP-only fact of another flow, an unknown key)


class _FlaggedBlock:
    """The rows of one block of columns whose records were asked for (load): a fact's Python values are made for
    all of them when one of them is first read (TCP-only facts for the other flows too: their records skip them)."""

    __slots__ = ("cols", "tcp", "texts", "lists")

    def __init__(self, cols: FlowColumns):
        self.cols = cols
        self.tcp = cols.tcp.astype(bool).tolist()
        self.texts: list[str] | None = None
        self.lists: dict[str, list] = {}

    def values(self, key: str) -> list:
        got = self.lists.get(key)
        if got is None:
            if self.texts is None:
                self.texts = self.cols.address_strings()
            got = self.lists[key] = _values(self.cols, key, KINDS[key], self.texts)
        return got


class LazyFacts(Facts):
    """A flow's record (Facts) holding some of its flow-analysis facts and its extra facts; the other facts are
    made when first read (by key, get, in), and whatever lists, compares or copies it sees the whole record, in
    the order column_records gives with the extra facts after them."""

    __slots__ = ("_block", "_row")

    def _resolve(self, key):
        block = self._block
        if key in KINDS and (block.tcp[self._row] or key not in _TCP_ONLY):
            value = block.values(key)[self._row]
            dict.__setitem__(self, key, value)
            return value
        return _NOT_HELD

    def __missing__(self, key):
        value = self._resolve(key)
        return None if value is _NOT_HELD else value

    def get(self, key, default=None):
        value = dict.get(self, key, _NOT_HELD)
        if value is _NOT_HELD:
            value = self._resolve(key)
            if value is _NOT_HELD:
                return default
        return value

    def __contains__(self, key) -> bool:
        return dict.__contains__(self, key) or self._resolve(key) is not _NOT_HELD

    def whole(self) -> Facts:
        """The whole record, as a Facts."""
        out = Facts()
        block, row, held = self._block, self._row, dict.get
        for name in _NAMES if block.tcp[row] else _COMMON_NAMES:
            value = held(self, name, _NOT_HELD)
            out[name] = block.values(name)[row] if value is _NOT_HELD else value
        for key, value in dict.items(self):
            if key not in out:
                out[key] = value
        return out

    def __iter__(self):
        return iter(self.whole())

    def __len__(self) -> int:
        return len(self.whole())

    def keys(self):
        return self.whole().keys()

    def values(self):
        return self.whole().values()

    def items(self):
        return self.whole().items()

    def copy(self) -> Facts:
        return self.whole()

    def __eq__(self, other) -> bool:
        return self.whole() == (other.whole() if isinstance(other, LazyFacts) else other)

    def __ne__(self, other) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.whole())

    def __reduce__(self):
        return Facts, (dict(self.whole()),)


class FlowRecords(Sequence):
    def __init__(self, analysis: FlowAnalysis):
        self.analysis = analysis
        self.n = len(analysis)
        self.extra: dict[int, dict] = {}  # conv -> facts beyond the flow analysis written one by one (extra_for)
        self.rows: dict[int, tuple[tuple, tuple]] = {}  # conv -> (keys, values): a flow's facts given at once
        self._signatures: dict[tuple, tuple] = {}  # one keys tuple shared by the rows with the same keys
        self.fact_columns: list[FactColumns] = []  # the same kind of facts of many flows as columns (after extra)
        self.lazy: list = []  # groups of flows whose facts are made on demand (add_lazy_facts): before the rows
        self._made: dict[int, dict] = {}  # records made so far (a Facts each, its extra facts included)
        self._columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # key -> (raw values, present)
        self._extra_keys: set[str] = set()  # extra facts the rules read (prepare)
        # prepared text columns hold ids into a table of the distinct texts (an object per flow cost 8 bytes, an
        # address text ~60 more): addresses into one of (ipv, hi, lo), formatted when a rule reads them
        self._address_ids: dict[tuple[int, int, int], int] = {}
        self._address_rows: list[tuple[int, int, int]] = []
        self._address_texts: list[str] = []
        self._strings = StringTable()
        self._present_pool: list[np.ndarray] = []  # the distinct presence masks of the prepared columns
        self._extra_found: dict[str, tuple[list, list]] | None = None  # key -> (convs, values): one sweep for all

    # ---- records -------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.n

    def __getitem__(self, conv: int) -> dict:
        if not 0 <= conv < self.n:
            raise IndexError(conv)
        got = self._made.get(conv)
        if got is None:
            self.load((conv,))
            got = self._made[conv]
        return got

    def loaded(self) -> dict[int, Facts]:
        """The records made so far (load, records[conv]) by flow: read only."""
        return self._made

    def __iter__(self) -> Iterator[dict]:
        """Every record, a block at a time (nothing kept)."""
        for cols in self.analysis.iter_columns(BLOCK):
            for rec, extra in zip(column_records(cols), self.extras_of(range(cols.lo, cols.lo + len(cols)))):
                yield {**rec, **extra} if extra else rec

    def extra_for(self, conv: int) -> dict:
        """The dict holding this flow's extra facts: write to it."""
        self._extra_found = None  # the caller writes to it
        self._made.pop(conv, None)
        return self.extra.setdefault(conv, {})

    def add_extra(self, conv: int, facts: dict) -> None:
        """A flow's extra facts, given at once and kept as a tuple of values (a ~45-key dict costs ~2.3 KB, its
        values ~0.4 KB; the keys are shared). Given twice, the later facts update the earlier ones."""
        if conv in self.rows:
            keys, values = self.rows[conv]
            facts = {**dict(zip(keys, values)), **facts}
        keys = tuple(facts)
        keys = self._signatures.setdefault(keys, keys)
        self.rows[conv] = keys, tuple(facts.values())
        self._extra_found = None
        self._made.pop(conv, None)

    def add_fact_columns(self, convs, columns: dict) -> None:
        """Facts of many flows at once, as columns over `convs`: per key an array, or a list of Python values with
        ABSENT where a flow does not hold the key (a dict per flow costs ~0.5-1 KB; tens of thousands of DNS
        conversations have the same few facts). A flow's extra_for facts win over its columns' facts."""
        if len(convs):
            self.fact_columns.append(FactColumns(convs, columns))
            self._extra_found = None
            self._made.clear()

    def add_lazy_facts(self, group) -> None:
        """Facts of many flows made on demand (diagnose.rules.app_columns.AppFacts): group.convs (sorted int64),
        group.facts(conv) -> a new dict of the flow's facts in record order, group.column(key) -> (values, held)
        over group.convs (held: the flow's facts hold the key; an object array of values may hold None) and
        group.release() (drop what column() keeps). They come first: rows, columns and written facts update them."""
        self.lazy.append(group)
        self._extra_found = None
        self._made.clear()

    @property
    def extra_keys_read(self) -> set[str]:
        """The facts beyond the flow analysis that prepare was asked for (the rules' and the latency split's)."""
        return set(self._extra_keys)

    def extra_of(self, conv: int) -> dict | None:
        """Every extra fact of a flow, or None (see extras_of)."""
        return self.extras_of([conv])[0]

    def extras_of(self, convs: Sequence[int]) -> list[dict | None]:
        """Every extra fact of each flow, or None: its lazy groups' facts (add_lazy_facts), its row (add_extra), its
        columns' facts (add_fact_columns) and the facts written with extra_for, each later source updating the
        earlier ones. Columns are searched for all the flows at once."""
        out: list[dict | None] = [None] * len(convs)

        def merge(j: int, facts: dict) -> None:
            if out[j] is None:
                out[j] = facts
            else:
                out[j].update(facts)

        if self.lazy and len(convs):
            wanted = np.asarray(convs, np.int64)
            for group in self.lazy:
                hit, _ = find_sorted(group.convs, wanted)
                many = getattr(group, "facts_many", None)
                made = many(wanted[hit]) if many is not None else [group.facts(c) for c in wanted[hit].tolist()]
                for j, facts in zip(hit.tolist(), made):
                    merge(j, facts)
        rows = self.rows
        if rows:
            for j, conv in enumerate(convs):
                row = rows.get(conv)
                if row is not None:
                    merge(j, dict(zip(*row)))
        if self.fact_columns and len(convs):
            wanted = np.asarray(convs, np.int64)
            for group in self.fact_columns:
                hit, at = group.find(wanted)
                for j, facts in zip(hit.tolist(), group.rows(at)):
                    merge(j, facts)
        written = self.extra
        if written:
            for j, conv in enumerate(convs):
                facts = written.get(conv)
                if facts is not None:
                    merge(j, facts)
        return out

    def load(self, convs: Iterable[int], keys: Iterable[str] | None = None) -> None:
        """Make the records of these flows, each block of columns computed once for all its flows. With `keys`,
        only those flow-analysis facts and IDENTITY_KEYS are put in the records now (a plain dict read finds
        them), the others when first read (LazyFacts): the findings of thousands of flagged flows read a few
        dozen of a record's ~115 facts, templates a few more."""
        distinct = np.unique(np.fromiter(convs, np.int64))  # sorted, as Python ints below (one step for thousands)
        made = self._made
        wanted = [c for c in distinct[(distinct >= 0) & (distinct < self.n)].tolist() if c not in made]
        if not wanted:
            return
        columns_of = getattr(self.analysis, "columns_of", None)
        if columns_of is not None:
            # one block of just these flows (computing every block around them cost ~3x more), made on the idle
            # core while the extra facts are made here (its kernel and numpy's sorts drop the GIL)
            made_block: list = []

            def make() -> None:
                try:
                    made_block.append(columns_of(np.array(wanted, np.int64)))
                except BaseException as exc:  # noqa: BLE001 - raised below, by the thread that waits for it
                    made_block.append(exc)

            making = threading.Thread(target=make, name="diagnose-flagged-columns", daemon=True)
            making.start()
            try:
                extras = self.extras_of(wanted)
            finally:
                making.join()
            if isinstance(made_block[0], BaseException):
                raise made_block[0]
        else:
            extras = self.extras_of(wanted)
        keys = _NAMES if keys is None else {*keys, *IDENTITY_KEYS}
        # the facts every record holds first, then the TCP-only ones: zip stops at the common ones for other flows
        common = [k for k in _NAMES if k in keys and k not in _TCP_ONLY]
        eager = common + [k for k in _NAMES if k in keys and k in _TCP_ONLY]
        made = self._made
        if columns_of is not None:
            block = _FlaggedBlock(made_block[0])
            lists = [block.values(k) for k in eager]
            for row, (conv, values, is_tcp, extra) in enumerate(zip(wanted, zip(*lists) if lists else
                                                                    [()] * len(wanted), block.tcp, extras)):
                facts = made[conv] = LazyFacts(zip(eager if is_tcp else common, values))
                facts._block, facts._row = block, row
                if extra:
                    facts.update(extra)
            for key in eager:  # every record holds these now (TCP-only ones: the TCP records), read nowhere else
                block.lists.pop(key, None)
            return
        i = 0
        while i < len(wanted):
            lo = wanted[i] // BLOCK * BLOCK
            j = i
            while j < len(wanted) and wanted[j] < lo + BLOCK:
                j += 1
            rows = np.array(wanted[i:j], np.int64) - lo
            block = _FlaggedBlock(_take(self.analysis.columns(lo, min(lo + BLOCK, self.n)), rows))
            lists = [block.values(k) for k in eager]
            for row, (conv, values, is_tcp, extra) in enumerate(zip(wanted[i:j], zip(*lists) if lists else
                                                                    [()] * (j - i), block.tcp, extras[i:j])):
                # as templates read it: findings share it, not a copy each
                facts = made[conv] = LazyFacts(zip(eager if is_tcp else common, values))
                facts._block, facts._row = block, row
                if extra:
                    facts.update(extra)
            i = j

    # ---- columns for the rules -----------------------------------------------------------------------------------
    def prepare(self, keys: Iterable[str]) -> None:
        """Compute the flow-analysis columns of these keys in one sweep over the flows (the rules' facts).

        Each block's slice of a column is copied out of the block (a block's numeric columns are views of its
        [flow, field] matrix, ~150 facts a flow: keeping views kept every block's whole matrix alive, ~80 MB at the
        peak for 73k flows) into the column, kept in the smallest integer type that holds the blocks so far (widened
        when a block needs it, narrowed again at the end): full-width int64 columns of every key at once were the
        peak of making the records (~19 MB held, +24 MB at the peak, for ~9 MB of columns), and keeping every
        block's slices until the end doubled the columns. Texts (states, addresses) are ids into a table of the
        distinct texts; equal presence masks are one array."""
        keys = set(keys)
        self._extra_keys.update(k for k in keys if k not in KINDS)
        todo = [k for k in sorted(keys) if k in KINDS and k not in self._columns]
        if not todo:
            return
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if not self.n:
            for key in todo:
                dtype = np.int64 if KINDS[key] in (ADDR, STR) else object if KINDS[key] in _TEXT_KINDS else np.float64
                out[key] = np.zeros(0, dtype), np.zeros(0, bool)  # (addresses and texts are ids)
        columns: dict[str, np.ndarray] = {}  # written block by block, widened when a block needs it
        present = np.empty((len(todo), self.n), bool)  # row k: where the records hold todo[k]
        wide: dict[str, np.dtype] = {}
        lo = 0
        for cols in self.analysis.iter_columns(_SWEEP, lazy_texts=True):  # Zeek's texts only if a rule reads them
            texts = _address_texts(cols, [k for k in todo if KINDS[k] == ENDPOINT])
            string_ids = None
            hi = lo + len(cols)
            tcp = cols.tcp.astype(bool)
            for k, key in enumerate(todo):
                null = cols.null.get(key)
                have = present[k, lo:hi]
                if null is None:
                    have[:] = True
                else:
                    np.logical_not(null, out=have)
                if key in _TCP_ONLY:
                    have &= tcp  # other records do not have the key at all
                kind = KINDS[key]
                if kind == ADDR:
                    values = self._address_column_part(cols, key)
                elif kind == STR:
                    ids = cols.values[key]  # first: reading Zeek's texts adds them to the block's strings
                    if string_ids is None or len(string_ids) < len(cols.strings):  # the block's texts in the records'
                        string_ids = np.fromiter(map(self._strings.add, cols.strings), np.int64, len(cols.strings))
                    values = string_ids[ids]
                else:
                    values = _raw(cols, key, texts)
                wide[key] = values.dtype
                narrow = _narrow(values)
                column = columns.get(key)
                if column is None:
                    column = columns[key] = np.empty(self.n, narrow.dtype)
                elif narrow.dtype != column.dtype:
                    dtype = np.result_type(column.dtype, narrow.dtype)
                    if dtype.kind != wide[key].kind and not (dtype.kind in "iu" and wide[key].kind in "iu"):
                        dtype = wide[key]  # never through floats
                    if dtype != column.dtype:
                        column = columns[key] = column.astype(dtype)
                column[lo:hi] = narrow
            lo = hi
            del cols
        for k, key in enumerate(todo):
            if key in columns:
                out[key] = _narrow(columns.pop(key)), self._shared(present[k])
        self._columns.update(out)

    def _shared(self, present: np.ndarray) -> np.ndarray:
        """One array for equal presence masks (most keys share the TCP flows' or every flow's), a copy of its own."""
        for known in self._present_pool:
            if np.array_equal(known, present):
                return known
        present = present.copy()
        self._present_pool.append(present)
        return present

    def _address_column_part(self, cols: FlowColumns, key: str) -> np.ndarray:
        """A block's address column as ids into the records' table of addresses (each distinct address of the
        block looked up once)."""
        index = cols.values[key]
        used = np.unique(index)
        ids = np.zeros(len(cols.addresses), np.int64)
        table, rows = self._address_ids, self._address_rows
        found = []
        for address in map(tuple, cols.addresses[used].tolist()):
            got = table.get(address)
            if got is None:
                got = table[address] = len(rows)
                rows.append(address)
            found.append(got)
        ids[used] = found
        return ids[index]

    def prepared(self, key: str, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(values, present) of one flow-analysis fact over every flow (or these rows), as prepared: numbers as
        stored (times and durations in integer ns), texts as the records' strings."""
        self.prepare((key,))
        raw, present = self._columns[key]
        if rows is not None:
            raw, present = raw[rows], present[rows]
        kind = KINDS[key]
        if kind in (ADDR, STR):
            raw = self._text_table(kind)[raw]
        return raw, present

    def _text_table(self, kind: int, blank: bool = False) -> np.ndarray:
        """The distinct texts text columns of this kind (ADDR, STR) hold ids of, as an object array (blank: and ""
        after them)."""
        texts = self._address_texts if kind == ADDR else self._strings.items
        if kind == ADDR and len(texts) < len(self._address_rows):
            texts.extend(_address(int(ipv), hi, lo) for ipv, hi, lo in self._address_rows[len(texts):])
        table = np.empty(len(texts) + blank, object)
        table[:len(texts)] = texts
        if blank:
            table[-1] = ""
        return table

    def address_column(self, key: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int]]]:
        """(ids, present, addresses) of an address fact over every flow: ids index addresses, (ipv, hi, lo) each."""
        self.prepare((key,))
        ids, present = self._columns[key]
        return ids, present, self._address_rows

    def release_columns(self) -> None:
        """Drop the prepared columns once the rules have read them (prepare or column recomputes them), and the
        columns lazy groups made."""
        self._columns.clear()
        self._present_pool.clear()
        self._extra_found = None
        for group in self.lazy:
            group.release()

    def column(self, key: str, ftype: T) -> tuple[np.ndarray, np.ndarray]:
        """(values typed for the display-filter engine, present) of one fact over every flow."""
        if key in KINDS:
            kind = KINDS[key]
            if ftype == T.STRING and kind in (ADDR, STR):  # the texts at once, "" where absent (as _typed makes)
                self.prepare((key,))
                ids, present = self._columns[key]
                table = self._text_table(kind, blank=True)
                return table[np.where(present, ids, len(table) - 1)], present
            raw, present = self.prepared(key)
            return _typed(raw, present, kind, ftype)
        (row_convs, row_found), (convs, found) = self._extra_values(key)
        values, _ = typed_values(np.empty(0, object), np.zeros(0, bool), ftype)
        values = np.empty(self.n, object) if ftype == T.STRING else np.zeros(self.n, values.dtype)
        if ftype == T.STRING:
            values[:] = ""
        present = np.zeros(self.n, bool)
        for group_convs, held in self._lazy_held(key):  # first, as a flow's record has them (a None: absent)
            have = np.fromiter((v is not None for v in held.tolist()), bool, len(held)) if held.dtype == object \
                else np.ones(len(held), bool)
            typed, _ = typed_values(held, have, ftype)
            values[group_convs] = typed
            present[group_convs] = have
        for part in ((row_convs, row_found), None, (convs, found)):
            if part is None:  # between the rows and the written facts: the columns
                for held_convs, held in self._held(key):
                    if held.dtype == object:
                        not_none = np.fromiter((v is not None for v in held.tolist()), bool, len(held))
                        held_convs, held = held_convs[not_none], held[not_none]
                    typed, _ = typed_values(held, np.ones(len(held), bool), ftype)
                    values[held_convs] = typed
                    present[held_convs] = True
                continue
            part_convs, part_found = part
            raw = np.empty(len(part_found), object)
            raw[:] = part_found
            have = np.fromiter((v is not None for v in part_found), bool, len(part_found))
            part, _ = typed_values(raw, have, ftype)
            values[part_convs] = part
            present[part_convs] = have
        return values, present

    def extra_values(self, key: str) -> tuple[list[int], list]:
        """(flows, values) of one extra fact, over the flows whose extra facts hold it (rows, columns, written)."""
        (row_convs, row_values), written = self._extra_values(key)
        found = {}
        for held_convs, held in self._lazy_held(key):
            found.update(zip(held_convs.tolist(), held.tolist()))
        found.update(zip(row_convs, row_values))
        for held_convs, held in self._held(key):
            found.update(zip(held_convs.tolist(), held.tolist()))
        found.update(zip(*written))
        return list(found), list(found.values())

    def extra_column(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, held) of one extra fact over every flow: the Python values a record holds (None where it
        holds None; later sources win, as in a record) and where a record holds the key."""
        values = np.empty(self.n, object)
        held = np.zeros(self.n, bool)
        (row_convs, row_values), (convs, written) = self._extra_values(key)
        for part_convs, part in (*self._lazy_held(key), (np.asarray(row_convs, np.int64), row_values),
                                 *self._held(key), (np.asarray(convs, np.int64), written)):
            if len(part_convs):
                values[part_convs] = part if isinstance(part, np.ndarray) else _objects(part)
                held[part_convs] = True
        return values, held

    def _lazy_held(self, key: str):
        """(flows, values) of one fact in each lazy group, for the flows whose facts hold it."""
        for group in self.lazy:
            values, held = group.column(key)
            keep = held & (group.convs < self.n)
            if keep.any():
                yield group.convs[keep], values[keep]

    def _held(self, key: str):
        """(flows, values) of one fact in each group of fact columns that holds it, for the flows that have it."""
        for group in self.fact_columns:
            got = group.columns.get(key)
            if got is None:
                continue
            held, has = got
            keep = group.convs < self.n
            if has is not None:
                keep &= has
            yield group.convs[keep], held[keep]

    def _extra_values(self, key: str) -> tuple[tuple[list[int], list], tuple[list[int], list]]:
        """((flows, values or None) from the rows, the same from the written facts) of one extra fact, from one
        sweep over the extra facts for every key the rules read. The flows are grouped by their keys (the
        application layer writes the facts of one kind of flow in one order), and each group's wanted values are
        read with one itemgetter per flow: a lookup per key and flow cost ~0.2 s for 20 keys of 64k flows."""
        found = self._extra_found
        if found is None or key not in found:
            wanted = {*self._extra_keys, key}
            groups: dict[tuple, tuple[list, list]] = {}  # (source, keys) -> (flows, value tuples or dicts)
            n = self.n
            for source, items in ((0, ((c, k, v) for c, (k, v) in self.rows.items())),
                                  (1, ((c, tuple(f), f) for c, f in self.extra.items()))):
                for conv, signature, facts in items:
                    if conv < n:
                        group = groups.get((source, signature))
                        if group is None:
                            group = groups[(source, signature)] = ([], [])
                        group[0].append(conv)
                        group[1].append(facts)
            found = {k: (([], []), ([], [])) for k in wanted}
            for (source, signature), (convs, items) in groups.items():
                keys = [k for k in signature if k in wanted]
                if not keys:
                    continue
                getter = itemgetter(*(signature.index(k) for k in keys)) if source == 0 else itemgetter(*keys)
                rows = list(map(getter, items))
                for k, column in zip(keys, zip(*rows) if len(keys) > 1 else (rows,)):
                    found[k][source][0].extend(convs)
                    found[k][source][1].extend(column)
            self._extra_found = found
        return found[key]

    def facts_of(self, convs: Sequence[int], keys: Sequence[str]) -> list[dict]:
        """Some facts of some flows, read from prepared columns (no record made): {key: value or None} each."""
        lists = self.fact_lists(convs, keys)
        return [dict(zip(keys, values)) for values in zip(*(lists[key] for key in keys))] if keys else \
            [{} for _ in convs]

    def fact_lists(self, convs: Sequence[int], keys: Sequence[str]) -> dict[str, list]:
        """Some facts of some flows as {key: [value or None per flow]}, read from prepared columns and the extra
        facts (no dict per flow)."""
        self.prepare(keys)
        out: dict[str, list] = {}
        idx = np.asarray(convs, np.int64)
        extras = None
        for key in keys:
            if key not in KINDS:
                if extras is None:
                    extras = [facts or {} for facts in self.extras_of(convs)]
                out[key] = [extra.get(key) for extra in extras]
                continue
            raw, present = self.prepared(key)
            kind = KINDS[key]
            values = raw[idx]
            items = (values / 1e9).tolist() if kind == NS else values.astype(bool).tolist() if kind == BOOL \
                else values.tolist()
            out[key] = [v if p else None for v, p in zip(items, present[idx].tolist())]
        return out


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


_ADDRESS_KEYS = [name for name, kind, _ in FIELDS if kind in (ADDR, ENDPOINT)]


_NARROW = tuple((np.dtype(t), int(np.iinfo(t).min), int(np.iinfo(t).max))
                for t in (np.uint8, np.uint16, np.int16, np.uint32, np.int32))  # (dtype, lowest, highest)


def _narrow(values: np.ndarray) -> np.ndarray:
    """An integer column in the smallest integer type holding all its values (counts, ports, frame numbers need
    far fewer than 64 bits: ~11 MB of the rules' 19 MB of columns on 73k flows were int64). Readers convert with
    astype, which gives the same numbers."""
    if values.dtype.kind not in "iu" or values.dtype.itemsize <= 1 or not len(values):
        return values
    lo, hi = int(values.min()), int(values.max())
    for dtype, lowest, highest in _NARROW:
        if lowest <= lo and hi <= highest:
            return values.astype(dtype) if dtype.itemsize < values.dtype.itemsize else values
    return values


class _TakenColumns(Mapping):
    """Some rows' columns by key, each made when first read from the rows of the block's [flow, field] matrix (a
    column per key taken from the block's own views made all ~115 views; records made lazily read a third)."""

    def __init__(self, matrix: np.ndarray, made: dict[str, np.ndarray], keys):
        self._matrix = matrix
        self._made = made
        self._keys = keys

    def __getitem__(self, name: str) -> np.ndarray:
        got = self._made.get(name)
        if got is None:
            column = self._matrix[:, _ROW[name]]
            kind = KINDS[name]
            got = self._made[name] = (column.view(np.uint64) if kind == UINT else
                                      column.view(np.float64) if kind == FLOAT else
                                      column != 0 if kind == BOOL else column)
        return got

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class _TakenNull(Mapping):
    """Some rows' None masks by key (only the keys that have one), made when first read."""

    def __init__(self, matrix: np.ndarray, keys: set[str]):
        self._matrix = matrix
        self._keys = keys

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._keys:
            raise KeyError(name)
        return self._matrix[:, _ROW[name]].view(bool)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _take(cols: FlowColumns, rows: np.ndarray) -> FlowColumns:
    """The rows `rows` of a block of columns, with an address table of just the addresses they use (records
    format every address of their table). Taken from the block's matrix when it has one (numbers made when read;
    SYN times, made from another table, at once)."""
    if cols.matrix is None or cols.null_matrix is None:
        return _take_each(cols, rows)
    matrix = cols.matrix[rows]
    made = {k: cols.values[k][rows] for k in cols.values if KINDS[k] == MICROS}
    ids = np.concatenate([matrix[:, _ROW[k]] for k in _ADDRESS_KEYS])
    used, inverse = np.unique(ids, return_inverse=True)
    for i, k in enumerate(_ADDRESS_KEYS):
        made[k] = inverse.ravel()[i * len(rows):(i + 1) * len(rows)].astype(np.int64)
    return dataclasses.replace(
        cols, values=_TakenColumns(matrix, made, list(cols.values)),
        null=_TakenNull(cols.null_matrix[rows], set(cols.null)), tcp=cols.tcp[rows],
        addresses=cols.addresses[used], ports={k: p[rows] for k, p in cols.ports.items()},
        lengths={k: n[rows] for k, n in cols.lengths.items()}, matrix=None, null_matrix=None)


def _take_each(cols: FlowColumns, rows: np.ndarray) -> FlowColumns:
    """_take of a block without a matrix: every column taken."""
    values = {k: v[rows] for k, v in cols.values.items()}
    used, inverse = np.unique(np.concatenate([values[k] for k in _ADDRESS_KEYS]), return_inverse=True)
    for i, k in enumerate(_ADDRESS_KEYS):
        values[k] = inverse.ravel()[i * len(rows):(i + 1) * len(rows)].astype(values[k].dtype)
    return dataclasses.replace(
        cols, values=values, null={k: m[rows] for k, m in cols.null.items()}, tcp=cols.tcp[rows],
        addresses=cols.addresses[used], ports={k: p[rows] for k, p in cols.ports.items()},
        lengths={k: n[rows] for k, n in cols.lengths.items()})


def _address_texts(cols: FlowColumns, keys: list[str]) -> list[str | None]:
    """The block's address table as text, formatted only where these columns point (a block's table also holds
    the clients' and ICMP senders' addresses: formatting them all was half of prepare's time)."""
    if not keys:
        return []
    used = np.unique(np.concatenate([cols.values[k] for k in keys]))
    texts: list[str | None] = [None] * len(cols.addresses)
    for i, (ipv, hi, lo) in zip(used.tolist(), cols.addresses[used].tolist()):
        texts[i] = _address(int(ipv), hi, lo)
    return texts


def _raw(cols: FlowColumns, key: str, texts: list[str]) -> np.ndarray:
    """A block's column as stored (numbers) or as the records' objects (other texts: endpoints, SYN times)."""
    kind = KINDS[key]
    if kind in _TEXT_KINDS:
        values = np.empty(len(cols), object)
        values[:] = _values(cols, key, kind, texts)
        return values
    return cols.values[key]


# below 2**50 ns (13 days), round(ns / 1e9 * 1e9) == ns: each of the two roundings errs by at most 2**-53 of the
# value, under 0.26 ns together
_EXACT_NS = 2**50


def _typed(raw: np.ndarray, present: np.ndarray, kind: int, ftype: T) -> tuple[np.ndarray, np.ndarray]:
    """The numbers a filter compares, exactly as the display-filter columns built from the dict records would be.
    A column that needs no conversion is the prepared column itself (filters only read it)."""
    absent = ~present
    if raw.dtype == object:
        if ftype == T.STRING and kind in (STR, ADDR, ENDPOINT):  # texts already: only absent ones become ""
            if not absent.any():
                return raw, present
            values = raw.copy()
            values[absent] = ""
            return values, present
        return typed_values(raw, present, ftype)
    exact = kind == NS and ftype in SECONDS_TYPES and len(raw) and -_EXACT_NS < int(raw.min()) and \
        int(raw.max()) < _EXACT_NS  # ns -> the record's seconds -> ns gives them back (see _EXACT_NS)
    if kind == NS and not exact:
        seconds = raw / 1e9  # the record's float
    else:
        seconds = raw.astype(np.float64) if kind == FLOAT else None
    if exact:
        values = raw.astype(np.int64, copy=False)
    elif ftype == T.BOOL:
        values = raw.astype(bool, copy=False)
    elif ftype == T.FLOAT:
        values = seconds if seconds is not None else raw.astype(np.float64)
    elif ftype in SECONDS_TYPES:
        values = np.round((seconds if seconds is not None else raw.astype(np.float64)) * 1e9).astype(np.int64)
    elif seconds is not None:
        values = np.trunc(seconds).astype(np.int64)  # int() of the record's float
    elif raw.dtype == np.uint64:
        values = raw.view(np.int64)  # what astype gives (modulo 2**64), without a copy
    else:
        values = raw.astype(np.int64, copy=False)
    if absent.any() and values[absent].any():
        values = np.where(present, values, np.zeros(1, values.dtype))
    return values, present
