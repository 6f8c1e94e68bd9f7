"""Filter parsers are saved in the user's cache (diagnose.filters.grammar.cached_parser): a saved parser must parse
and reject exactly what a freshly built one does, a damaged file must be rebuilt and rewritten, and a good file must
be loaded, not rebuilt."""

from __future__ import annotations

import pytest
from lark import Lark
from lark.exceptions import UnexpectedInput

from diagnose.filters import grammar
from diagnose.resources import data_dir

SAMPLES = {
    "display_filter.lark": [
        "tcp.port == 80", "ip.addr == 10.0.0.0/8 and not tcp.flags.reset == 1", 'http.request.method == "POST"',
        'dns.qry.name matches "^www\\\\."', "tcp.stream eq 5", "frame[0:2] == 00:01", "tcp.analysis.retransmission",
        "tls.handshake.type == 1 || udp.port in {53 5353}", "len(http.host) > 3", "eth.addr[1-2] == 12:34",
        "(a.b or c) and", "tcp.port == == 1", "ip.src ==", "{", "tcp.port in {1,2", "@bad",
    ],
    "bpf.lark": [
        "tcp port 80", "host 10.0.0.5 and not udp", "tcp[tcpflags] & tcp-rst != 0", "ip6 and src net ::1/128",
        "vlan 100 and (port 53 or portrange 1000-2000)", "ether[0] & 1 = 1", "len > 100", "icmp[icmptype] = icmp-echo",
        "host", "port 80 and", "tcp[0:5] = 1", "((tcp)",
    ],
}


def _outcome(parser: Lark, text: str):
    try:
        return ("tree", parser.parse(text))
    except UnexpectedInput as exc:
        return ("error", type(exc).__name__, exc.column)


@pytest.mark.parametrize("grammar_file", sorted(SAMPLES))
def test_a_saved_parser_parses_and_rejects_like_a_built_one(tmp_path, grammar_file):
    text = (data_dir("grammar") / grammar_file).read_text(encoding="utf-8")
    built = Lark(text, **grammar._OPTIONS)
    grammar.cached_parser(text, tmp_path)  # builds and saves
    assert len(list(tmp_path.glob("*.lark"))) == 1
    saved = grammar.cached_parser(text, tmp_path)  # loads
    outcomes = [_outcome(saved, s) for s in SAMPLES[grammar_file]]
    assert outcomes == [_outcome(built, s) for s in SAMPLES[grammar_file]]
    assert {o[0] for o in outcomes} == {"tree", "error"}


def test_a_good_file_is_loaded_not_rebuilt(tmp_path, monkeypatch):
    text = (data_dir("grammar") / "display_filter.lark").read_text(encoding="utf-8")
    grammar.cached_parser(text, tmp_path)

    class Refusing(Lark):
        def __init__(self, *args, **kwargs):
            raise AssertionError("the grammar was built although a saved parser exists")

    monkeypatch.setattr(grammar, "Lark", Refusing)
    assert grammar.cached_parser(text, tmp_path).parse("tcp.port == 80") is not None


def test_a_damaged_file_is_rebuilt_and_rewritten(tmp_path):
    text = (data_dir("grammar") / "bpf.lark").read_text(encoding="utf-8")
    grammar.cached_parser(text, tmp_path)
    (saved,) = tmp_path.glob("*.lark")
    saved.write_bytes(b"not a parser")
    assert grammar.cached_parser(text, tmp_path).parse("tcp port 80") is not None
    with saved.open("rb") as f:
        assert Lark.load(f).parse("tcp port 80") is not None
    assert not list(tmp_path.glob("*.tmp"))
