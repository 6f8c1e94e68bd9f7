"""Parse a capture filter (pcap-filter(7)) into the typed tree of bpf_ast (grammar/bpf.lark).

One transformer method per grammar alias; numbers and names stay text until code generation, where the link type
is known and errors can still point at their column.
"""

from __future__ import annotations

from lark import Token, Transformer, Tree, v_args
from lark.exceptions import VisitError

from diagnose.errors import FilterError
from diagnose.filters import bpf_ast as ast
from diagnose.filters.grammar import parse as parse_with_grammar

LANGUAGE = "bpf"
GRAMMAR_FILE = "bpf.lark"


def parse_bpf(text: str) -> ast.Node:
    """The typed tree of a capture filter; FilterError (with column) when it is not well-formed."""
    tree = parse_with_grammar(GRAMMAR_FILE, text, LANGUAGE)
    try:
        return _ToAst(text).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, FilterError):
            raise exc.orig_exc from None
        raise


def _span(meta, default: int = 0) -> tuple[int, int]:
    if getattr(meta, "empty", True):
        return default, default
    return meta.start_pos, meta.end_pos


def _token_span(token: Token) -> tuple[int, int]:
    return token.start_pos, token.end_pos


def _keywords(children) -> list[str]:
    return [str(c) for c in children if isinstance(c, Token)]


@v_args(meta=True)
class _ToAst(Transformer):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    # ---- boolean structure ---------------------------------------------------------------------------------------
    def empty(self, meta, children):
        return ast.Empty(0, 0)

    def and_(self, meta, children):
        return ast.Logical(*_span(meta), "and", children[0], children[1])

    def or_(self, meta, children):
        return ast.Logical(*_span(meta), "or", children[0], children[1])

    def not_(self, meta, children):
        return ast.Not(*_span(meta), children[0])

    def qualified(self, meta, children):
        head, qid = children
        return ast.Qualified(*_span(meta), head, qid)

    def protocol(self, meta, children):
        (name,) = children
        return ast.Protocol(*_span(meta), name)

    def value_term(self, meta, children):
        return ast.ValueTerm(*_span(meta), children[0])

    def bare_masked(self, meta, children):
        address, mask = children
        return ast.BareId(*_span(meta), ast.IdMasked(*_span(meta), str(address), str(mask)))

    def bare_address(self, meta, children):
        (token,) = children
        return ast.BareId(*_span(meta), ast.IdValue(*_token_span(token), str(token), "address"))

    def bare_address_prefix(self, meta, children):
        address, prefix = children
        return ast.BareId(*_span(meta), ast.IdPrefix(*_span(meta), str(address), str(prefix)))

    def bare_escaped(self, meta, children):
        (token,) = children
        return ast.BareId(*_span(meta), ast.IdValue(*_token_span(token), str(token)[1:], "escaped"))

    def relation(self, meta, children):
        left, op, right = children
        return ast.Relation(*_span(meta), op, left, right)

    # ---- qualifiers ----------------------------------------------------------------------------------------------
    def proto_name(self, meta, children):
        return str(children[0])

    def _head(self, meta, children, *, proto=None, direction=None, type_=None):
        start, end = _span(meta)
        return ast.Qualifiers(start, end, proto, direction, type_)

    def head_pdt(self, meta, children):
        proto, direction, type_ = children
        return self._head(meta, children, proto=proto, direction=direction, type_=type_)

    def head_pd(self, meta, children):
        proto, direction = children
        return self._head(meta, children, proto=proto, direction=direction)

    def head_pt(self, meta, children):
        proto, type_ = children
        return self._head(meta, children, proto=proto, type_=type_)

    def head_dt(self, meta, children):
        direction, type_ = children
        return self._head(meta, children, direction=direction, type_=type_)

    def head_d(self, meta, children):
        return self._head(meta, children, direction=children[0])

    def head_t(self, meta, children):
        return self._head(meta, children, type_=children[0])

    def head_proto(self, meta, children):
        return self._head(meta, children, proto=children[0], type_="proto")

    def head_bare_proto(self, meta, children):
        return self._head(meta, children, type_="proto")

    def head_protochain(self, meta, children):
        return self._head(meta, children, proto=children[0], type_="protochain")

    def head_bare_protochain(self, meta, children):
        return self._head(meta, children, type_="protochain")

    def dir_src(self, meta, children):
        return "src"

    def dir_dst(self, meta, children):
        return "dst"

    def dir_src_or_dst(self, meta, children):
        return "src_or_dst"

    def dir_src_and_dst(self, meta, children):
        return "src_and_dst"

    def type_host(self, meta, children):
        return "host"

    def type_net(self, meta, children):
        return "net"

    def type_port(self, meta, children):
        return "port"

    def type_portrange(self, meta, children):
        return "portrange"

    def type_gateway(self, meta, children):
        return "gateway"

    # ---- ids -----------------------------------------------------------------------------------------------------
    def id_word(self, meta, children):
        (token,) = children
        return ast.IdValue(*_token_span(token), str(token), "word")

    def id_address(self, meta, children):
        (token,) = children
        return ast.IdValue(*_token_span(token), str(token), "address")

    def id_escaped(self, meta, children):
        (token,) = children
        return ast.IdValue(*_token_span(token), str(token)[1:], "escaped")

    def id_prefix(self, meta, children):
        address, prefix = children
        return ast.IdPrefix(*_span(meta), str(address), str(prefix))

    def id_masked(self, meta, children):
        address, mask = children
        return ast.IdMasked(*_span(meta), str(address), str(mask))

    def id_not(self, meta, children):
        return ast.IdNot(*_span(meta), children[0])

    def id_and(self, meta, children):
        return ast.IdLogical(*_span(meta), "and", children[0], children[1])

    def id_or(self, meta, children):
        return ast.IdLogical(*_span(meta), "or", children[0], children[1])

    # ---- keyword primitives --------------------------------------------------------------------------------------
    def _primitive(self, meta, children, kind):
        argument = next((c for c in children if isinstance(c, Token) and c.type == "WORD"), None)
        proto = next((c for c in children if isinstance(c, str) and not isinstance(c, Token)), None)
        start, end = _span(meta)
        return ast.Primitive(start, end, kind, None if argument is None else str(argument),
                             argument.start_pos if argument is not None else end, proto)

    def less(self, meta, children):
        return self._primitive(meta, children, "less")

    def greater(self, meta, children):
        return self._primitive(meta, children, "greater")

    def vlan(self, meta, children):
        return self._primitive(meta, children, "vlan")

    def mpls(self, meta, children):
        return self._primitive(meta, children, "mpls")

    def pppoes(self, meta, children):
        return self._primitive(meta, children, "pppoes")

    def pppoed(self, meta, children):
        return self._primitive(meta, children, "pppoed")

    def geneve(self, meta, children):
        return self._primitive(meta, children, "geneve")

    def broadcast(self, meta, children):
        return self._primitive(meta, children, "broadcast")

    def multicast(self, meta, children):
        return self._primitive(meta, children, "multicast")

    def inbound(self, meta, children):
        return self._primitive(meta, children, "inbound")

    def outbound(self, meta, children):
        return self._primitive(meta, children, "outbound")

    def ifindex(self, meta, children):
        return self._primitive(meta, children, "ifindex")

    # ---- relations and arithmetic --------------------------------------------------------------------------------
    def rel_gt(self, meta, children):
        return "gt"

    def rel_ge(self, meta, children):
        return "ge"

    def rel_lt(self, meta, children):
        return "lt"

    def rel_le(self, meta, children):
        return "le"

    def rel_eq(self, meta, children):
        return "eq"

    def rel_ne(self, meta, children):
        return "ne"

    def _binary(self, meta, children, op):
        return ast.Arithmetic(*_span(meta), op, children[0], children[1])

    def or_op(self, meta, children):
        return self._binary(meta, children, "|")

    def and_op(self, meta, children):
        return self._binary(meta, children, "&")

    def lsh_op(self, meta, children):
        return self._binary(meta, children, "<<")

    def rsh_op(self, meta, children):
        return self._binary(meta, children, ">>")

    def add_op(self, meta, children):
        return self._binary(meta, children, "+")

    def sub_op(self, meta, children):
        return self._binary(meta, children, "-")

    def mul_op(self, meta, children):
        return self._binary(meta, children, "*")

    def div_op(self, meta, children):
        return self._binary(meta, children, "/")

    def mod_op(self, meta, children):
        return self._binary(meta, children, "%")

    def xor_op(self, meta, children):
        return self._binary(meta, children, "^")

    def neg_op(self, meta, children):
        return ast.Negative(*_span(meta), children[0])

    def number(self, meta, children):
        (token,) = children
        return ast.Number(*_token_span(token), str(token))

    def packet_length(self, meta, children):
        return ast.PacketLength(*_span(meta))

    def load(self, meta, children):
        proto, index = children
        return ast.Load(*_span(meta), proto, index)

    def load_sized(self, meta, children):
        proto, index, size = children
        if size not in ("1", "2", "4"):
            raise FilterError(self.text, size.start_pos, "data size must be 1, 2, or 4", language=LANGUAGE)
        return ast.Load(*_span(meta), proto, index, int(size), size.start_pos)

    def parens(self, meta, children):
        return ast.Parens(*_span(meta), children[0])


__all__ = ["parse_bpf", "Tree"]
