"""Turn a capture-filter syntax tree into predicates over the frame bytes (bpf_ir), with libpcap's semantics.

What this reproduces of libpcap 1.10's code generator, because filters must match exactly what tcpdump matches:
* Link-layer dispatch per link type (Ethernet, BSD/OpenBSD loopback, raw IP, Linux cooked v1/v2), and the
  error libpcap gives when a primitive makes no sense on that link type.
* `vlan`, `mpls` and `pppoes` move the link-type field and the network-layer offset for everything written after
  them, in textual order and regardless of and/or/not (`vlan 100 and vlan 200` means VLAN 200 inside VLAN 100).
* Qualifier carry-over: a bare value takes the qualifiers of the primitive before it (`host a and b`).
* `tcp[...]`, `udp[...]`, `icmp[...]` and friends are IPv4 only and require the first fragment; `port` checks IPv6
  (fixed 40-byte header, no extension headers) and IPv4 (first fragment only); `tcp` alone follows one IPv6
  fragment header; comparisons are unsigned 32-bit; `!=` and `<` are the negation of `=` and `>=` but keep the
  protocol checks positive (`tcp[13] != 2` is false for UDP).
* "expression rejects all packets" when the filter can never accept, as libpcap's optimizer reports it.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from diagnose.errors import FilterError
from diagnose.filters import bpf_ast as ast
from diagnose.filters import bpf_ir as ir
from diagnose.filters.bpf_names import CONSTANTS, ETHERTYPES, IPPROTO, LLC_SAPS, ip_protocol, service

LANGUAGE = "bpf"

ETHERTYPE_IP, ETHERTYPE_IPV6, ETHERTYPE_ARP, ETHERTYPE_REVARP = 0x0800, 0x86DD, 0x0806, 0x8035
ETHERTYPE_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
ETHERTYPE_MPLS, ETHERTYPE_PPPOED, ETHERTYPE_PPPOES = 0x8847, 0x8863, 0x8864
ETHERMTU = 1500
PPP_IP, PPP_IPV6 = 0x0021, 0x0057
IPPROTO_FRAGMENT = 44
BSD_AF_INET = 2
BSD_AF_INET6 = (30, 24, 28)  # FreeBSD/Darwin, NetBSD/OpenBSD, ... as libpcap checks them


@dataclass(frozen=True)
class Link:
    kind: str  # ethernet null loop raw ipv4 ipv6 sll sll2 ppp other
    name: str  # as libpcap names the link type in its messages
    off_linktype: int  # offset of the link-layer protocol field (-1: none)
    off_linkpl: int  # offset of the network-layer header
    linktype: int


LINKS = {
    1: Link("ethernet", "Ethernet", 12, 14, 1),
    0: Link("null", "BSD loopback", 0, 4, 0),
    108: Link("loop", "OpenBSD loopback", 0, 4, 108),
    101: Link("raw", "Raw IP", -1, 0, 101),
    12: Link("raw", "Raw IP", -1, 0, 12),
    14: Link("raw", "Raw IP", -1, 0, 14),
    228: Link("ipv4", "Raw IPv4", -1, 0, 228),
    229: Link("ipv6", "Raw IPv6", -1, 0, 229),
    113: Link("sll", "Linux cooked v1", 14, 16, 113),
    276: Link("sll2", "Linux cooked v2", 0, 20, 276),
}


def link_for(linktype: int) -> Link:
    return LINKS.get(linktype, Link("other", f"DLT {linktype}", -1, 0, linktype))


@dataclass(frozen=True)
class Quals:
    proto: str | None = None
    direction: str | None = None
    type: str | None = None


QERR = None  # after a relation or a keyword primitive a bare value has no qualifiers to borrow


class Lowering:
    """One compilation of one filter for one link type (the offsets it tracks change as the filter is read)."""

    def __init__(self, text: str, linktype: int, *, big_endian: bool = False, libpcap_shape: bool = False):
        self.text = text
        # libpcap_shape: build `port` as libpcap's generator does, one branch per transport protocol, each with its
        # own port test (its optimizer merges them later). Same packets; it only matters to can_accept, whose
        # reasoning follows libpcap's flow graph.
        self.libpcap_shape = libpcap_shape
        self.link = link_for(linktype)
        self.big_endian = big_endian
        self.mpls_depth = 0

    # ---- errors --------------------------------------------------------------------------------------------------
    def error(self, node_or_column, message: str) -> FilterError:
        column = node_or_column if isinstance(node_or_column, int) else node_or_column.start
        return FilterError(self.text, column, message, language=LANGUAGE)

    # ---- entry ---------------------------------------------------------------------------------------------------
    def lower(self, node: ast.Node) -> ir.Pred:
        pred, _ = self.term(node, QERR)
        return pred

    def term(self, node: ast.Node, q):
        """(predicate, qualifiers a following bare value borrows), walking left to right like libpcap's parser."""
        if isinstance(node, ast.Empty):
            return ir.TRUE, QERR
        if isinstance(node, ast.Logical):
            left, q_left = self.term(node.left, q)
            right, q_right = self.term(node.right, q_left)
            combined = ir.and_(left, right) if node.op == "and" else ir.or_(left, right)
            return combined, q_right
        if isinstance(node, ast.Not):
            operand, q_after = self.term(node.operand, q)
            return ir.not_(operand), q_after
        if isinstance(node, ast.Qualified):
            quals = Quals(node.qualifiers.proto, node.qualifiers.direction, node.qualifiers.type)
            return self.id_pred(node.id, quals, node.qualifiers), quals
        if isinstance(node, ast.BareId):
            return self.bare(node.id, q, node), q
        if isinstance(node, ast.ValueTerm):
            return self.value_term(node, q)
        if isinstance(node, ast.Protocol):
            return self.protocol(node.name, node), QERR
        if isinstance(node, ast.Primitive):
            return self.primitive(node), QERR
        if isinstance(node, ast.Relation):
            return self.relation(node), QERR
        raise self.error(node, "unexpected filter element")  # pragma: no cover

    def value_term(self, node: ast.ValueTerm, q):
        value = node.value
        if isinstance(value, ast.Parens):
            pred, q_inner = self.term(value.expr, q)
            # "(a or b)" after a qualified primitive is libpcap's id list: its qualifiers carry on
            return pred, (q_inner if _starts_with_bare_value(value.expr) else q)
        if isinstance(value, ast.Number):
            return self.bare(ast.IdValue(value.start, value.end, value.text, "word"), q, node), q
        if (isinstance(value, ast.Arithmetic) and value.op == "/" and isinstance(value.left, ast.Number)
                and isinstance(value.right, ast.Number)):
            prefix = ast.IdPrefix(value.start, value.end, value.left.text, value.right.text)
            return self.bare(prefix, q, node), q
        raise self.error(node.end, "expected a comparison (=, !=, <, <=, >, >=) after this value")

    def bare(self, id_node: ast.Node, q, node: ast.Node) -> ir.Pred:
        if q is QERR:
            raise self.error(node, "a value needs a qualifier before it (host, net, port, ...)")
        return self.id_pred(id_node, q, node)

    # ---- ids under qualifiers ------------------------------------------------------------------------------------
    def id_pred(self, id_node: ast.Node, q: Quals, where: ast.Node) -> ir.Pred:
        if isinstance(id_node, ast.IdNot):
            return ir.not_(self.id_pred(id_node.operand, q, where))
        if isinstance(id_node, ast.IdLogical):
            left = self.id_pred(id_node.left, q, where)
            right = self.id_pred(id_node.right, q, where)
            return ir.and_(left, right) if id_node.op == "and" else ir.or_(left, right)
        kind = q.type or "host"
        if kind == "proto":
            return self.proto_qualified(q, id_node)
        if kind == "protochain":
            return self.protochain(q, id_node)
        if kind == "gateway":
            raise self.error(id_node, "'gateway' not supported in this configuration")
        if kind in ("port", "portrange"):
            return self.port(q, id_node, kind)
        return self.address(q, id_node, kind)

    # ---- link layer ----------------------------------------------------------------------------------------------
    def linktype(self, ethertype: int, where) -> ir.Pred:
        """The test that the network layer is `ethertype`, on this link type at this point of the filter."""
        link = self.link
        if self.mpls_depth:
            if ethertype not in (ETHERTYPE_IP, ETHERTYPE_IPV6):
                raise self.error(where, "unsupported protocol over mpls")
            version = 0x40 if ethertype == ETHERTYPE_IP else 0x60
            bottom = ir.masked_eq(ir.load(link.off_linkpl - 2, 1), 0x01, 0x01)
            return ir.and_(bottom, ir.masked_eq(ir.load(link.off_linkpl, 1), 0xF0, version))
        if link.kind == "ethernet":
            return self._ethernet_type(ethertype, link.off_linktype)
        if link.kind in ("sll", "sll2"):
            if ethertype <= ETHERMTU:
                return ir.FALSE
            return ir.eq(ir.load(link.off_linktype, 2), ethertype)
        if link.kind in ("null", "loop"):
            if ethertype == ETHERTYPE_IP:
                families = (BSD_AF_INET,)
            elif ethertype == ETHERTYPE_IPV6:
                families = BSD_AF_INET6
            else:
                return ir.FALSE
            word = ir.load(0, 4)
            return ir.any_of(*(ir.eq(word, self._family(af)) for af in families))
        if link.kind == "raw":
            if ethertype not in (ETHERTYPE_IP, ETHERTYPE_IPV6):
                return ir.FALSE
            return ir.masked_eq(ir.load(0, 1), 0xF0, 0x40 if ethertype == ETHERTYPE_IP else 0x60)
        if link.kind == "ipv4":
            return ir.TRUE if ethertype == ETHERTYPE_IP else ir.FALSE
        if link.kind == "ipv6":
            return ir.TRUE if ethertype == ETHERTYPE_IPV6 else ir.FALSE
        if link.kind == "ppp":
            ppp = {ETHERTYPE_IP: PPP_IP, ETHERTYPE_IPV6: PPP_IPV6}.get(ethertype)
            return ir.FALSE if ppp is None else ir.eq(ir.load(link.off_linktype, 2), ppp)
        raise self.error(where, f"DLT {link.linktype} link-layer type filtering not implemented")

    def _family(self, af: int) -> int:
        """DLT_NULL stores the address family in the byte order of the machine that wrote the file."""
        if self.link.kind == "loop" or self.big_endian:
            return af
        return int.from_bytes(af.to_bytes(4, "little"), "big")

    def _ethernet_type(self, ethertype: int, off: int) -> ir.Pred:
        field = ir.load(off, 2)
        not_length = ir.not_(ir.Test("gt", field, ir.Const(ETHERMTU)))
        if ethertype in (0x809B, 0x80F3):  # AppleTalk, AARP: Ethernet II or 802.2 SNAP
            oui = 0x080007 if ethertype == 0x809B else 0
            snap = ir.and_(ir.eq(ir.load(off + 6, 4), (oui << 16 | ethertype) & 0xFFFFFFFF),
                           ir.eq(ir.load(off + 2, 4), 0xAAAA0300 | (oui >> 16)))
            return ir.or_(ir.eq(field, ethertype), ir.and_(not_length, snap))
        if ethertype == 0x8137:  # IPX: Ethernet II, SNAP, 802.2, or raw 802.3
            snap = ir.and_(ir.eq(ir.load(off + 6, 4), 0x8137), ir.eq(ir.load(off + 2, 4), 0xAAAA0300))
            llc = ir.any_of(snap, ir.eq(ir.load(off + 2, 1), 0xE0), ir.eq(ir.load(off + 2, 2), 0xFFFF))
            return ir.or_(ir.eq(field, ethertype), ir.and_(not_length, llc))
        if ethertype <= ETHERMTU:  # an 802.2 LLC SAP
            return ir.and_(not_length, ir.eq(ir.load(off + 2, 1), ethertype))
        return ir.eq(field, ethertype)

    def _llc(self, sap: int, name: str, where) -> ir.Pred:
        if self.link.kind != "ethernet" or self.mpls_depth:
            if self.link.kind == "other":
                raise self.error(where, f"DLT {self.link.linktype} link-layer type filtering not implemented")
            return ir.FALSE
        off = self.link.off_linktype
        not_length = ir.not_(ir.Test("gt", ir.load(off, 2), ir.Const(ETHERMTU)))
        if name == "stp":
            return ir.and_(not_length, ir.eq(ir.load(off + 2, 1), sap))
        return ir.and_(not_length, ir.eq(ir.load(off + 2, 2), sap << 8 | sap))

    @property
    def nl(self) -> int:
        return self.link.off_linkpl

    # ---- protocols -----------------------------------------------------------------------------------------------
    def protocol(self, name: str, where) -> ir.Pred:
        if name in ("ether", "link"):
            raise self.error(where, "link layer applied in wrong context")
        if name in ("ip", "ip6", "arp", "rarp"):
            return self.linktype({"ip": ETHERTYPE_IP, "ip6": ETHERTYPE_IPV6, "arp": ETHERTYPE_ARP,
                                  "rarp": ETHERTYPE_REVARP}[name], where)
        if name in ("iso", "stp", "netbeui"):
            return self._llc(LLC_SAPS[name], name, where)
        if name in ("atalk", "aarp", "decnet", "lat", "sca", "moprc", "mopdl", "ipx"):
            return self.linktype(ETHERTYPES[name], where)
        if name in ("tcp", "udp", "sctp", "pim", "ah", "esp"):
            return ir.or_(self.ip_proto(IPPROTO[name], where), self.ip6_proto(IPPROTO[name], where))
        if name in ("icmp", "igmp", "igrp", "vrrp", "carp"):
            return self.ip_proto(IPPROTO[name], where)
        if name == "icmp6":
            return self.ip6_proto(IPPROTO[name], where)
        raise self.error(where, f"'{name}' is not supported")

    def ip_proto(self, proto: int, where) -> ir.Pred:
        return ir.and_(self.linktype(ETHERTYPE_IP, where), ir.eq(ir.load(self.nl + 9, 1), proto))

    def ip6_proto(self, proto: int, where) -> ir.Pred:
        nxt = ir.load(self.nl + 6, 1)
        after_fragment = ir.and_(ir.eq(nxt, IPPROTO_FRAGMENT), ir.eq(ir.load(self.nl + 40, 1), proto))
        return ir.and_(self.linktype(ETHERTYPE_IPV6, where), ir.or_(ir.eq(nxt, proto), after_fragment))

    def proto_qualified(self, q: Quals, id_node: ast.Node) -> ir.Pred:
        if not isinstance(id_node, ast.IdValue) or id_node.kind == "address":
            raise self.error(id_node, "expected a protocol number or name")
        proto = q.proto
        if proto in ("ether", "link"):
            value = self._number_or(id_node, ETHERTYPES, "ether proto")
            if id_node.kind != "word" or not id_node.text[0].isdigit():
                if id_node.text in LLC_SAPS and id_node.text not in ETHERTYPES:
                    return self._llc(LLC_SAPS[id_node.text], id_node.text, id_node)
            return self.linktype(value, id_node)
        value = self._number_or(id_node, None, "ip proto")
        if proto is None:
            return ir.or_(self.ip_proto(value, id_node), self.ip6_proto(value, id_node))
        if proto == "ip":
            return self.ip_proto(value, id_node)
        if proto == "ip6":
            return self.ip6_proto(value, id_node)
        raise self.error(id_node, f"'{proto} proto' is not supported")

    def protochain(self, q: Quals, id_node: ast.Node) -> ir.Pred:
        if not isinstance(id_node, ast.IdValue) or id_node.kind == "address":
            raise self.error(id_node, "expected a protocol number or name")
        value = self._number_or(id_node, None, "ip proto")
        v4 = ir.and_(self.linktype(ETHERTYPE_IP, id_node), ir.ProtoChain(4, value, self.nl))
        v6 = ir.and_(self.linktype(ETHERTYPE_IPV6, id_node), ir.ProtoChain(6, value, self.nl))
        if q.proto is None:
            return ir.or_(v4, v6)
        if q.proto == "ip":
            return v4
        if q.proto == "ip6":
            return v6
        raise self.error(id_node, f"'{q.proto} protochain' is not supported")

    def _number_or(self, id_node: ast.IdValue, names: dict | None, what: str) -> int:
        text = id_node.text
        if id_node.kind == "word" and text[0].isdigit():
            return self.number(text, id_node)
        value = names.get(text) if names is not None else ip_protocol(text)
        if value is None:
            raise self.error(id_node, f"unknown {what} '{text}'")
        return value

    # ---- addresses -----------------------------------------------------------------------------------------------
    def address(self, q: Quals, id_node: ast.Node, kind: str) -> ir.Pred:
        proto = q.proto
        if proto in ("ether", "link"):
            if kind == "net":
                raise self.error(id_node, "illegal link layer address")
            return self.ether_host(self._mac(id_node), q.direction, id_node)
        address, prefix, is_v6 = self._ip_value(id_node, kind)
        if proto not in (None, "ip", "ip6", "arp", "rarp"):
            raise self.error(id_node, f"'{proto}' modifier applied to {kind}")
        if is_v6:
            if proto not in (None, "ip6"):
                raise self.error(id_node, f"'{proto}' modifier applied to ip6 {kind}")
            return self.host6(address, prefix, q.direction, id_node)
        if proto == "ip6":
            raise self.error(id_node, f"'ip6' modifier applied to ip {kind}")
        mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0
        if proto is None:
            return ir.any_of(self.host4(address, mask, q.direction, ETHERTYPE_IP, 12, 16, id_node),
                             self.host4(address, mask, q.direction, ETHERTYPE_ARP, 14, 24, id_node),
                             self.host4(address, mask, q.direction, ETHERTYPE_REVARP, 14, 24, id_node))
        ethertype = {"ip": ETHERTYPE_IP, "arp": ETHERTYPE_ARP, "rarp": ETHERTYPE_REVARP}[proto]
        src, dst = (12, 16) if proto == "ip" else (14, 24)
        return self.host4(address, mask, q.direction, ethertype, src, dst, id_node)

    def _ip_value(self, id_node: ast.Node, kind: str) -> tuple[int, int, bool]:
        """(address, prefix length, is IPv6) of a host/net value, with libpcap's rules for partial addresses."""
        if isinstance(id_node, ast.IdMasked):
            if kind != "net":
                raise self.error(id_node, "Mask syntax for networks only")
            address, _ = self._dotted(id_node.address, id_node, partial=True)
            mask, _ = self._dotted(id_node.mask, id_node, partial=False)
            if address & ~mask & 0xFFFFFFFF:
                raise self.error(id_node, f'non-network bits set in "{id_node.address} mask {id_node.mask}"')
            prefix = bin(mask).count("1")
            if mask != ((0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF if prefix else 0):
                raise self.error(id_node, "non-contiguous netmasks are not supported")
            return address, prefix, False
        if isinstance(id_node, ast.IdPrefix):
            if kind != "net":
                raise self.error(id_node, "Mask syntax for networks only")
            length = self.number(id_node.prefix, id_node)
            if ":" in id_node.address:
                if length > 128:
                    raise self.error(id_node, "mask length must be <= 128")
                address = self._ipv6(id_node.address, id_node)
                if address & ~(((1 << 128) - 1) << (128 - length)) & ((1 << 128) - 1):
                    raise self.error(id_node, f'non-network bits set in "{id_node.address}/{id_node.prefix}"')
                return address, length, True
            if length > 32:
                raise self.error(id_node, "mask length must be <= 32")
            address, _ = self._dotted(id_node.address, id_node, partial=True)
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF if length else 0
            if address & ~mask & 0xFFFFFFFF:
                raise self.error(id_node, f'non-network bits set in "{id_node.address}/{id_node.prefix}"')
            return address, length, False
        assert isinstance(id_node, ast.IdValue)
        text = id_node.text
        if id_node.kind == "address":
            if _is_mac(text):
                raise self.error(id_node, "ethernet address used in non-ether expression")
            return self._ipv6(text, id_node), 128, True
        if id_node.kind == "escaped" or not re.fullmatch(r"[0-9][0-9xXa-fA-F.]*", text):
            raise self.error(id_node, f"unknown host '{text}'")
        if "." not in text:
            # a plain number: a host number, or for `net` the network shifted up (net 10 = 10.0.0.0/8)
            value = self.number(text, id_node)
            if kind == "net":
                mask = 0xFFFFFFFF
                while value and not value & 0xFF000000:
                    value <<= 8
                    mask = (mask << 8) & 0xFFFFFFFF
                return value, bin(mask).count("1"), False
            return value, 32, False
        value, bits = self._dotted(text, id_node, partial=True)
        return value, bits, False

    def _dotted(self, text: str, where, *, partial: bool) -> tuple[int, int]:
        """A dotted IPv4 value: 1 to 4 parts; fewer parts fill from the top (10.1 = 10.1.0.0/16)."""
        parts = text.split(".")
        if not 1 <= len(parts) <= 4 or not all(p.isdigit() and int(p) <= 255 for p in parts) or \
                (not partial and len(parts) != 4):
            raise self.error(where, f"'{text}' is not a valid IPv4 address")
        value = 0
        for part in parts:
            value = (value << 8) | int(part)
        value <<= 8 * (4 - len(parts))
        return value, 8 * len(parts)

    def _ipv6(self, text: str, where) -> int:
        try:
            return int(ipaddress.IPv6Address(text))
        except ValueError:
            raise self.error(where, f"'{text}' is not a valid IPv6 address") from None

    def _mac(self, id_node: ast.Node) -> int:
        text = id_node.text if isinstance(id_node, ast.IdValue) else ""
        if isinstance(id_node, ast.IdValue) and id_node.kind == "address" and not _is_mac(text) and \
                ("::" in text or text.count(":") == 7):
            raise self.error(id_node, "link-layer modifier applied to ip6 host")
        value = _parse_mac(text) if isinstance(id_node, ast.IdValue) else None
        if value is None:
            raise self.error(id_node, "illegal link layer address")
        return value

    def host4(self, address: int, mask: int, direction: str | None, ethertype: int, src_off: int, dst_off: int,
              where) -> ir.Pred:
        def at(offset: int) -> ir.Pred:
            return ir.masked_eq(ir.load(self.nl + offset, 4), mask, address)
        return ir.and_(self.linktype(ethertype, where), _directed(direction, at(src_off), at(dst_off)))

    def host6(self, address: int, prefix: int, direction: str | None, where) -> ir.Pred:
        mask = (((1 << 128) - 1) << (128 - prefix)) & ((1 << 128) - 1)

        def at(offset: int) -> ir.Pred:
            tests = []
            for word in range(4):
                shift = 96 - 32 * word
                word_mask = (mask >> shift) & 0xFFFFFFFF
                if word_mask:
                    tests.append(ir.masked_eq(ir.load(self.nl + offset + 4 * word, 4), word_mask,
                                              (address >> shift) & 0xFFFFFFFF))
            return ir.all_of(*tests)
        return ir.and_(self.linktype(ETHERTYPE_IPV6, where), _directed(direction, at(8), at(24)))

    def ether_host(self, mac: int, direction: str | None, where) -> ir.Pred:
        if self.link.kind != "ethernet":
            raise self.error(where, "ethernet addresses supported only on ethernet/FDDI/token ring/802.11/ATM LANE/"
                                    "Fibre Channel")

        def at(offset: int) -> ir.Pred:
            # libpcap compares the last four bytes first, then the first two
            return ir.and_(ir.eq(ir.load(offset + 2, 4), mac & 0xFFFFFFFF), ir.eq(ir.load(offset, 2), mac >> 32))
        return _directed(direction, at(6), at(0))

    # ---- ports ---------------------------------------------------------------------------------------------------
    def port(self, q: Quals, id_node: ast.Node, kind: str) -> ir.Pred:
        if not isinstance(id_node, ast.IdValue) or id_node.kind == "address":
            raise self.error(id_node, f"illegal {kind} value")
        proto = q.proto
        if proto not in (None, "tcp", "udp", "sctp", "ip", "ip6"):
            raise self.error(id_node, f"illegal qualifier of '{kind}'")
        if kind == "port":
            low, named = self._port_value(id_node.text, id_node, "port")
            high = low
        else:
            pieces = id_node.text.split("-")
            if len(pieces) == 1:
                low, named = self._port_value(pieces[0], id_node, "port")
                high = low
            elif len(pieces) == 2 and all(pieces):
                low, named_low = self._port_value(pieces[0], id_node, "port in range")
                high, named_high = self._port_value(pieces[1], id_node, "port in range")
                named = named_low if named_low is not None else named_high
                low, high = min(low, high), max(low, high)
            else:
                raise self.error(id_node, f"unknown port in range '{id_node.text}'")
        protos = [IPPROTO["sctp"], IPPROTO["tcp"], IPPROTO["udp"]]
        if proto in ("tcp", "udp", "sctp"):
            if named is not None and proto not in named:
                raise self.error(id_node, f"port '{id_node.text}' is {'/'.join(named)}")
            protos = [IPPROTO[proto]]
        elif named is not None and len(named) == 1:
            protos = [IPPROTO[named[0]]]
        want_v4 = proto != "ip6"
        want_v6 = proto != "ip"
        result = ir.FALSE
        if want_v6:
            result = ir.or_(result, self._port6(protos, low, high, q.direction, id_node))
        if want_v4:
            result = ir.or_(result, self._port4(protos, low, high, q.direction, id_node))
        return result

    def _port_value(self, text: str, where, what: str) -> tuple[int, tuple[str, ...] | None]:
        if text and text[0].isdigit():
            value = self.number(text, where)
            if value > 65535:
                raise self.error(where, f"illegal port number {value} > 65535")
            return value, None
        found = service(text)
        if found is None:
            raise self.error(where, f"unknown {what} '{text}'")
        port, tcp, udp = found
        names = tuple(n for n, ok in (("tcp", tcp), ("udp", udp)) if ok)
        return port, (None if len(names) == 2 else names)

    def _port_test(self, base: ir.Value | int, low: int, high: int, direction: str | None) -> ir.Pred:
        def at(offset: int) -> ir.Pred:
            value = _offset_load(base, offset, 2)
            if low == high:
                return ir.eq(value, low)
            return ir.and_(ir.Test("ge", value, ir.Const(low)), ir.not_(ir.Test("gt", value, ir.Const(high))))
        return _directed(direction, at(0), at(2))

    def _port4(self, protos, low, high, direction, where) -> ir.Pred:
        proto = ir.load(self.nl + 9, 1)
        test = self._port_test(ir.IpHeaderLength(self.nl), low, high, direction)
        if self.libpcap_shape:
            branches = ir.any_of(*(ir.all_of(ir.eq(proto, p), self._first_fragment(), test) for p in protos))
            return ir.and_(self.linktype(ETHERTYPE_IP, where), branches)
        return ir.all_of(self.linktype(ETHERTYPE_IP, where), ir.any_of(*(ir.eq(proto, p) for p in protos)),
                         self._first_fragment(), test)

    def _port6(self, protos, low, high, direction, where) -> ir.Pred:
        nxt = ir.load(self.nl + 6, 1)
        test = self._port_test(self.nl + 40, low, high, direction)
        if self.libpcap_shape:
            branches = ir.any_of(*(ir.and_(ir.eq(nxt, p), test) for p in protos))
            return ir.and_(self.linktype(ETHERTYPE_IPV6, where), branches)
        return ir.all_of(self.linktype(ETHERTYPE_IPV6, where), ir.any_of(*(ir.eq(nxt, p) for p in protos)), test)

    def _first_fragment(self) -> ir.Pred:
        return ir.not_(ir.bits_set(ir.load(self.nl + 6, 2), 0x1FFF))

    # ---- keyword primitives --------------------------------------------------------------------------------------
    def primitive(self, node: ast.Primitive) -> ir.Pred:
        kind = node.kind
        link = self.link
        if kind in ("less", "greater"):
            value = self.number(node.argument, node.argument_start)
            if kind == "less":
                return ir.not_(ir.Test("gt", ir.PacketLength(), ir.Const(value)))
            return ir.Test("ge", ir.PacketLength(), ir.Const(value))
        if kind == "vlan":
            return self.vlan(node)
        if kind == "mpls":
            return self.mpls(node)
        if kind in ("pppoes", "pppoed"):
            return self.pppoe(node)
        if kind == "geneve":
            raise self.error(node, "geneve is not supported")
        if kind == "broadcast":
            return self.broadcast(node)
        if kind == "multicast":
            return self.multicast(node)
        if kind in ("inbound", "outbound"):
            if link.kind == "sll":
                outgoing = ir.eq(ir.load(0, 2), 4)
            elif link.kind == "sll2":
                outgoing = ir.eq(ir.load(10, 1), 4)
            else:
                raise self.error(node, f"inbound/outbound not supported on {link.name} when reading savefiles")
            return outgoing if kind == "outbound" else ir.not_(outgoing)
        if kind == "ifindex":
            if link.kind != "sll2":
                raise self.error(node, f"ifindex not supported on {link.name} when reading savefiles")
            return ir.eq(ir.load(4, 4), self.number(node.argument, node.argument_start))
        raise self.error(node, f"'{kind}' is not supported")  # pragma: no cover

    def vlan(self, node: ast.Primitive) -> ir.Pred:
        link = self.link
        if link.kind != "ethernet" or self.mpls_depth:
            raise self.error(node, f"no VLAN support for {link.name}")
        tpid = ir.load(link.off_linktype, 2)
        pred = ir.any_of(*(ir.eq(tpid, t) for t in ETHERTYPE_VLAN_TPIDS))
        if node.argument is not None:
            vid = self.number(node.argument, node.argument_start)
            if vid > 4095:
                raise self.error(node.argument_start, f"VLAN tag {vid} greater than maximum 4095")
            pred = ir.and_(pred, ir.masked_eq(ir.load(link.off_linkpl, 2), 0x0FFF, vid))
        self.link = replace(link, off_linktype=link.off_linktype + 4, off_linkpl=link.off_linkpl + 4)
        return pred

    def mpls(self, node: ast.Primitive) -> ir.Pred:
        link = self.link
        if link.kind != "ethernet":
            raise self.error(node, f"no MPLS support for {link.name}")
        if self.mpls_depth:
            pred = ir.not_(ir.bits_set(ir.load(link.off_linkpl - 2, 1), 0x01))  # the label before is not the last
        else:
            pred = ir.eq(ir.load(link.off_linktype, 2), ETHERTYPE_MPLS)
        if node.argument is not None:
            label = self.number(node.argument, node.argument_start)
            if label > 0xFFFFF:
                raise self.error(node.argument_start, f"MPLS label {label} greater than maximum 1048575")
            pred = ir.and_(pred, ir.masked_eq(ir.load(link.off_linkpl, 4), 0xFFFFF000, label << 12))
        self.link = replace(link, off_linkpl=link.off_linkpl + 4)
        self.mpls_depth += 1
        return pred

    def pppoe(self, node: ast.Primitive) -> ir.Pred:
        link = self.link
        if node.kind == "pppoed":
            return self.linktype(ETHERTYPE_PPPOED, node)
        pred = self.linktype(ETHERTYPE_PPPOES, node)  # false on link types that cannot carry PPPoE
        if node.argument is not None:
            session = self.number(node.argument, node.argument_start)
            if session > 0xFFFF:
                raise self.error(node.argument_start, f"PPPoE session number {session} greater than maximum 65535")
            pred = ir.and_(pred, ir.masked_eq(ir.load(link.off_linkpl, 4), 0xFFFF, session))
        # from here on the link layer is PPP: its protocol field follows the 6-byte PPPoE header
        if link.kind in ("ethernet", "sll", "sll2"):
            self.link = replace(link, kind="ppp", off_linktype=link.off_linkpl + 6, off_linkpl=link.off_linkpl + 8)
        return pred

    def broadcast(self, node: ast.Primitive) -> ir.Pred:
        if node.proto in (None, "ether", "link"):
            if self.link.kind != "ethernet":
                raise self.error(node, "not a broadcast link")
            return self.ether_host(0xFFFFFFFFFFFF, "dst", node)
        if node.proto == "ip":
            dst = ir.load(self.nl + 16, 4)
            return ir.and_(self.linktype(ETHERTYPE_IP, node), ir.or_(ir.eq(dst, 0), ir.eq(dst, 0xFFFFFFFF)))
        raise self.error(node, "only link-layer/IP broadcast filters supported")

    def multicast(self, node: ast.Primitive) -> ir.Pred:
        if node.proto in (None, "ether", "link"):
            if self.link.kind != "ethernet":
                raise self.error(node, "link-layer multicast filters supported only on ethernet/FDDI/token ring/"
                                       "ARCNET/802.11/ATM LANE/Fibre Channel")
            return ir.bits_set(ir.load(0, 1), 0x01)
        if node.proto == "ip":
            return ir.and_(self.linktype(ETHERTYPE_IP, node), ir.Test("ge", ir.load(self.nl + 16, 1),
                                                                        ir.Const(224)))
        if node.proto == "ip6":
            return ir.and_(self.linktype(ETHERTYPE_IPV6, node), ir.eq(ir.load(self.nl + 24, 1), 255))
        raise self.error(node, "only IP multicast filters supported on ethernet/FDDI/token ring/ARCNET/802.11/"
                               "ATM LANE/Fibre Channel")

    # ---- relations -----------------------------------------------------------------------------------------------
    def relation(self, node: ast.Relation) -> ir.Pred:
        guards: list[ir.Pred] = []
        left = self.value(node.left, guards)
        right = self.value(node.right, guards)
        op = node.op
        if op in ("eq", "ne"):
            test: ir.Pred = ir.Test("eq", left, right)
        elif op in ("gt", "le"):
            test = ir.Test("gt", left, right)
        else:
            test = ir.Test("ge", left, right)
        if isinstance(left, ir.Const) and isinstance(right, ir.Const):
            test = ir.Bool(ir.compare(test.op, left.value, right.value))
        if op in ("ne", "le", "lt"):
            test = ir.not_(test)
        return ir.all_of(*guards, test)

    def value(self, node: ast.Node, guards: list[ir.Pred]) -> ir.Value:
        if isinstance(node, ast.Number):
            if node.text in CONSTANTS:
                return ir.Const(CONSTANTS[node.text])
            if not node.text[0].isdigit():
                raise self.error(node, f"unknown name '{node.text}'")
            return ir.Const(self.number(node.text, node))
        if isinstance(node, ast.PacketLength):
            return ir.PacketLength()
        if isinstance(node, ast.Parens):
            inner = node.expr
            if isinstance(inner, ast.ValueTerm):
                return self.value(inner.value, guards)
            raise self.error(node, "expected an arithmetic expression inside the parentheses")
        if isinstance(node, ast.Negative):
            operand = self.value(node.operand, guards)
            if isinstance(operand, ir.Const):
                return ir.Const((-operand.value) & ir.MASK32)
            return ir.Neg(operand)
        if isinstance(node, ast.Arithmetic):
            left = self.value(node.left, guards)
            right = self.value(node.right, guards)
            if isinstance(right, ir.Const):
                if node.op == "/" and right.value == 0:
                    raise self.error(node, "division by zero")
                if node.op == "%" and right.value == 0:
                    raise self.error(node, "modulus by zero")
                if node.op in ("<<", ">>") and right.value > 31:
                    raise self.error(node, "shift by more than 31 bits")
                if isinstance(left, ir.Const):
                    return ir.Const(ir.fold(node.op, left.value, right.value))
            return ir.BinOp(node.op, left, right)
        if isinstance(node, ast.Load):
            return self.load(node, guards)
        raise self.error(node, "expected a number, len or a packet load like tcp[13]")

    def load(self, node: ast.Load, guards: list[ir.Pred]) -> ir.Value:
        index = self.value(node.index, guards)
        proto = node.proto
        if proto in ("ether", "link"):
            base: ir.Value | int = 0
            guard = ir.TRUE
        elif proto in ("ip", "ip6", "arp", "rarp"):
            ethertype = {"ip": ETHERTYPE_IP, "ip6": ETHERTYPE_IPV6, "arp": ETHERTYPE_ARP,
                         "rarp": ETHERTYPE_REVARP}[proto]
            guard = self.linktype(ethertype, node)
            base = self.nl
        elif proto in ("tcp", "udp", "icmp", "igmp", "igrp", "pim", "vrrp", "carp", "sctp"):
            guard = ir.all_of(self.ip_proto(IPPROTO[proto], node), self._first_fragment())
            base = ir.IpHeaderLength(self.nl)
        elif proto == "icmp6":
            guard = ir.and_(self.linktype(ETHERTYPE_IPV6, node), ir.eq(ir.load(self.nl + 6, 1), 58))
            base = self.nl + 40
        else:
            raise self.error(node, f"'{proto}[]' is not supported")
        if guard not in guards and guard != ir.TRUE:
            guards.append(guard)
        if isinstance(base, int):
            if isinstance(index, ir.Const):
                offset: ir.Value = ir.Const((base + index.value) & ir.MASK32)
            else:
                offset = ir.BinOp("+", index, ir.Const(base)) if base else index
        elif isinstance(index, ir.Const):  # after the IPv4 header: libpcap's ldxb 4*([nl]&0xf); ld [x + nl + k]
            offset = ir.BinOp("+", base, ir.Const((self.nl + index.value) & ir.MASK32))
        else:
            offset = ir.BinOp("+", ir.BinOp("+", base, index), ir.Const(self.nl))
        return ir.Load(offset, node.size)

    # ---- numbers -------------------------------------------------------------------------------------------------
    def number(self, text: str | None, where) -> int:
        if text is None:
            raise self.error(where, "expected a number")
        try:
            if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
                value = int(text, 16)
            elif re.fullmatch(r"0[0-7]*", text):
                value = int(text, 8)
            elif re.fullmatch(r"[1-9][0-9]*", text):
                value = int(text)
            else:
                raise ValueError
        except ValueError:
            raise self.error(where, f"'{text}' is not a number") from None
        if value > 0xFFFFFFFF:
            raise self.error(where, f"number {text} overflows 32 bits")
        return value


def _offset_load(base: ir.Value | int, offset: int, size: int) -> ir.Load:
    if isinstance(base, int):
        return ir.load(base + offset, size)
    return ir.Load(ir.BinOp("+", base, ir.Const(_base_extra(base) + offset)), size)


def _base_extra(base: ir.Value) -> int:
    """Transport headers after IPv4: the header length is counted from the IP header's own offset."""
    return base.offset if isinstance(base, ir.IpHeaderLength) else 0


def _directed(direction: str | None, src: ir.Pred, dst: ir.Pred) -> ir.Pred:
    if direction == "src":
        return src
    if direction == "dst":
        return dst
    if direction == "src_and_dst":
        return ir.and_(src, dst)
    return ir.or_(src, dst)


def _starts_with_bare_value(node: ast.Node) -> bool:
    while isinstance(node, (ast.Logical, ast.Not)):
        node = node.left if isinstance(node, ast.Logical) else node.operand
    return isinstance(node, ast.BareId) or (isinstance(node, ast.ValueTerm) and not isinstance(node.value, ast.Parens))


_MAC_FORMS = (
    re.compile(r"([0-9A-Fa-f]{1,2})[:.\-]([0-9A-Fa-f]{1,2})[:.\-]([0-9A-Fa-f]{1,2})[:.\-]([0-9A-Fa-f]{1,2})"
               r"[:.\-]([0-9A-Fa-f]{1,2})[:.\-]([0-9A-Fa-f]{1,2})"),
)


def _is_mac(text: str) -> bool:
    return _parse_mac(text) is not None and "::" not in text


def _parse_mac(text: str) -> int | None:
    """A MAC-48 in any of libpcap's spellings: a:b:c:d:e:f (also . or -), aabb.ccdd.eeff, aabbccddeeff."""
    match = _MAC_FORMS[0].fullmatch(text)
    if match:
        value = 0
        for part in match.groups():
            value = (value << 8) | int(part, 16)
        return value
    if re.fullmatch(r"[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}", text) or \
            re.fullmatch(r"[0-9A-Fa-f]{12}", text):
        return int(text.replace(".", ""), 16)
    return None


# ---- "expression rejects all packets" -----------------------------------------------------------------------------


def can_accept(pred: ir.Pred) -> bool:
    """Whether some packet could pass, reasoning as libpcap's optimizer does on the program's flow graph.

    Every jump (an "edge") carries what is known on the way to it: tests already taken and values known to equal a
    constant after a true `=`. A test the edge's knowledge decides is jumped over for that edge alone (libpcap's
    jump threading); edges reaching a test they cannot decide merge there, keeping only what all of them know."""
    true_edges, _ = _flow(pred, [_Known()])
    return bool(true_edges)


class _Known:
    """What holds on the way to an edge."""

    def __init__(self, values=None, tests=None):
        self.values: dict = values or {}
        self.tests: dict = tests or {}

    def with_test(self, test: ir.Test, result: bool) -> _Known:
        values = dict(self.values)
        if result and test.op == "eq" and isinstance(test.right, ir.Const):
            values[test.left] = test.right.value
        return _Known(values, {**self.tests, (test.op, test.left, test.right): result})

    def decide(self, test: ir.Test) -> bool | None:
        a = test.left.value if isinstance(test.left, ir.Const) else self.values.get(test.left)
        b = test.right.value if isinstance(test.right, ir.Const) else self.values.get(test.right)
        if a is not None and b is not None:
            return ir.compare(test.op, a, b)
        return self.tests.get((test.op, test.left, test.right))

    def key(self):
        return (frozenset(self.values.items()), frozenset(self.tests.items()))


def _meet(edges: list[_Known]) -> _Known:
    first, *rest = edges
    values, tests = dict(first.values), dict(first.tests)
    for other in rest:
        values = {k: v for k, v in values.items() if other.values.get(k) == v}
        tests = {k: v for k, v in tests.items() if other.tests.get(k) == v}
    return _Known(values, tests)


def _unique(edges: list[_Known]) -> list[_Known]:
    seen, out = set(), []
    for edge in edges:
        key = edge.key()
        if key not in seen:
            seen.add(key)
            out.append(edge)
    return out


def _flow(p: ir.Pred, edges: list[_Known]) -> tuple[list[_Known], list[_Known]]:
    """The edges leaving p when it is true and when it is false, given the edges entering it."""
    if not edges:
        return [], []
    if isinstance(p, ir.Bool):
        return (edges, []) if p.value else ([], edges)
    if isinstance(p, ir.Test):
        true, false, undecided = [], [], []
        for edge in edges:
            verdict = edge.decide(p)
            (undecided if verdict is None else true if verdict else false).append(edge)
        if undecided:
            merged = _meet(undecided)
            true.append(merged.with_test(p, True))
            false.append(merged.with_test(p, False))
        return _unique(true), _unique(false)
    if isinstance(p, ir.ProtoChain):  # a loop: nothing is known after it
        merged = _meet(edges)
        return [merged], [merged]
    if isinstance(p, ir.Not):
        true, false = _flow(p.operand, edges)
        return false, true
    if isinstance(p, ir.And):
        left_true, left_false = _flow(p.left, edges)
        right_true, right_false = _flow(p.right, left_true)
        return right_true, _unique(left_false + right_false)
    if isinstance(p, ir.Or):
        left_true, left_false = _flow(p.left, edges)
        right_true, right_false = _flow(p.right, left_false)
        return _unique(left_true + right_true), right_false
    raise TypeError(p)
