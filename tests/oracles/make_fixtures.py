#!/usr/bin/env python3
"""Regenerate the stored tshark/capinfos oracle fixtures under tests/data/fixtures/tshark/.

Developer tool, never run by the test suite: it needs tshark and capinfos (made with 4.0.17). The tests only read
the JSON written here, so the product is checked against Wireshark without Wireshark installed.

    python3 tests/oracles/make_fixtures.py                # every capture under tests/data/{lab,corpus,corpus-zeek}
    python3 tests/oracles/make_fixtures.py 'lab/syn_*'    # only captures whose <group>/<relative path> matches

One fixture per capture: tests/data/fixtures/tshark/<group>/<relative path>.json (or .json.gz when large).
tests/data/fixtures/README.md documents every key and the exact command lines.
"""

from __future__ import annotations

import argparse
import fnmatch
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
FIXTURES = DATA / "fixtures" / "tshark"
GROUPS = ("lab", "corpus", "corpus-zeek")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".gz")

# Fixtures bigger than this are stored gzip-compressed (see GZIP_OVER in README); keeps the repository small.
GZIP_OVER_BYTES = 256 * 1024

PACKET_FIELDS = [
    # frame / link
    "frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id", "frame.encap_type",
    "frame.protocols", "eth.src", "eth.dst", "eth.type", "vlan.id",
    # network
    "ip.version", "ip.src", "ip.dst", "ip.ttl", "ip.id", "ip.proto", "ip.len", "ip.hdr_len", "ip.flags.df",
    "ip.flags.mf", "ip.frag_offset", "ip.checksum.status",
    "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.nxt", "ipv6.plen",
    # transport
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value",
    "tcp.hdr_len", "tcp.len", "tcp.stream", "tcp.option_kind", "tcp.options.mss_val", "tcp.options.wscale.shift",
    # tcp.options.sack_perm is a protocol item in 4.0: it prints the option bytes (0402) when present.
    "tcp.options.sack_perm", "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr",
    "tcp.options.sack_le", "tcp.options.sack_re",
    "udp.srcport", "udp.dstport", "udp.length", "udp.stream",
    "icmp.type", "icmp.code", "icmpv6.type", "icmpv6.code", "arp.opcode",
    # tcp analysis (relative numbers, windows, timing, rtt)
    "tcp.seq", "tcp.ack", "tcp.nxtseq", "tcp.window_size", "tcp.window_size_scalefactor", "tcp.time_delta",
    "tcp.time_relative", "tcp.completeness", "tcp.analysis.acks_frame", "tcp.analysis.ack_rtt",
    "tcp.analysis.initial_rtt", "tcp.analysis.bytes_in_flight", "tcp.analysis.duplicate_ack_num",
    "tcp.analysis.duplicate_ack_frame",
    # dns
    "dns.id", "dns.flags.response", "dns.flags.rcode", "dns.qry.name", "dns.qry.type", "dns.time",
    "dns.response_to", "dns.a", "dns.aaaa",
    # http
    "http.request.method", "http.request.uri", "http.host", "http.response.code", "http.time",
    "http.request_in", "http.response_in",
    # tls
    "tls.record.version", "tls.handshake.type", "tls.handshake.version",
    "tls.handshake.extensions.supported_version", "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str", "tls.handshake.ciphersuite",
    "tls.alert_message.level", "tls.alert_message.desc",
    # certificates, flat (every occurrence in encoding order; the structured view is under "certificates")
    "x509af.utcTime", "x509af.generalizedTime", "x509sat.printableString", "x509sat.uTF8String",
    "x509sat.CountryName", "x509ce.dNSName",
]

TCP_ANALYSIS_FLAGS = [
    "retransmission", "fast_retransmission", "spurious_retransmission", "duplicate_ack", "lost_segment",
    "ack_lost_segment", "out_of_order", "zero_window", "zero_window_probe", "zero_window_probe_ack",
    "window_full", "window_update", "keep_alive", "keep_alive_ack", "reused_ports",
]
# FT_NONE flags print nothing with -e, so membership comes from one -Y run per filter.
FRAME_SET_FILTERS = [f"tcp.analysis.{flag}" for flag in TCP_ANALYSIS_FLAGS] + [
    "dns", "dns.flags.rcode == 3", "http", "http.request", "http.response", "http.response.code >= 400",
    "tls", "tls.handshake.type == 1", "tls.handshake.type == 2", "tls.handshake.type == 11",
    "tls.alert_message",
]

# Lab captures with HTTP whose TCP streams are also stored as `-z follow,tcp,ascii,N` text.
FOLLOW_CAPTURES = {"lab/healthy_http.pcap", "lab/http_404_and_500.pcap", "lab/slow_ttfb.pcap",
                   "lab/mid_stream_rst.pcap"}

# Multiple occurrences are joined with this byte in the tshark run (it cannot occur in a printed value), then
# re-joined with "," so rows read exactly like `-E aggregator=,` output.
UNIT_SEPARATOR = "\x1f"
ROOT_WARNING = re.compile(r'^Running as user "root" and group "root"\. This could be dangerous\.\n?', re.M)


class Tools:
    """Runs tshark/capinfos from tests/data with default preferences and UTC, so output is reproducible."""

    def __init__(self) -> None:
        self._config_dir = tempfile.TemporaryDirectory(prefix="wireshark-defaults-")
        self.env = dict(os.environ, TZ="UTC", LC_ALL="C.UTF-8", WIRESHARK_CONFIG_DIR=self._config_dir.name)
        self.tshark_version = self.run(["tshark", "--version"])[0].splitlines()[0]
        self.capinfos_version = self.run(["capinfos", "--version"])[0].splitlines()[0]

    def run(self, argv: list[str]) -> tuple[str, str, int]:
        done = subprocess.run(argv, cwd=DATA, env=self.env, capture_output=True)
        stderr = ROOT_WARNING.sub("", done.stderr.decode("utf-8", "replace"))
        return done.stdout.decode("utf-8", "replace"), stderr, done.returncode


def find_captures(patterns: list[str]) -> list[tuple[str, str]]:
    """(group, path relative to the group folder) for every capture file, sorted."""
    found = []
    for group in GROUPS:
        root = DATA / group
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name.endswith(CAPTURE_SUFFIXES):
                rel = path.relative_to(root).as_posix()
                key = f"{group}/{rel}"
                if not patterns or any(fnmatch.fnmatch(key, p) for p in patterns):
                    found.append((group, rel))
    return found


def keylog_for(group: str, rel: str) -> str | None:
    """Key log path relative to tests/data: lab <stem>.keys next to the capture; corpus per manifest.json."""
    if group == "lab":
        keys = DATA / group / (Path(rel).stem + ".keys")
        return f"{group}/{keys.name}" if keys.exists() else None
    if group == "corpus":
        manifest = json.loads((DATA / "corpus" / "manifest.json").read_text())
        keylog = manifest.get(rel, {}).get("keylog")
        return f"corpus/{keylog}" if keylog else None
    return None


def packet_table(tools: Tools, capture: str, prefs: list[str]) -> tuple[dict, str]:
    argv = ["tshark", "-n", "-r", capture, *prefs, "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a",
            "-E", f"aggregator={UNIT_SEPARATOR}", "-E", "quote=n"]
    for field in PACKET_FIELDS:
        argv += ["-e", field]
    out, err, _ = tools.run(argv)
    rows: list[list[str]] = []
    comma_values: dict[str, dict[str, list[str]]] = {}
    for line in out.splitlines():
        cells = line.split("\t")
        # The separator check: a tab or newline inside a value would change the cell count or break numbering.
        if len(cells) != len(PACKET_FIELDS):
            raise SystemExit(f"{capture}: {len(cells)} cells, expected {len(PACKET_FIELDS)}: {line[:200]!r}")
        if cells[0] != str(len(rows) + 1):
            raise SystemExit(f"{capture}: frame.number {cells[0]!r} after {len(rows)} rows")
        for field, cell in zip(PACKET_FIELDS, cells):
            occurrences = cell.split(UNIT_SEPARATOR)
            if any("," in value for value in occurrences):
                # Joined with "," this cell is ambiguous; keep the true occurrences beside it.
                comma_values.setdefault(field, {})[cells[0]] = occurrences
        rows.append([cell.replace(UNIT_SEPARATOR, ",") for cell in cells])
    table = {"fields": PACKET_FIELDS, "rows": rows}
    if comma_values:
        table["comma_values"] = comma_values
    return table, err


def frame_sets(tools: Tools, capture: str, prefs: list[str], main_error: str) -> tuple[dict, dict]:
    sets, errors = {}, {}
    for display_filter in FRAME_SET_FILTERS:
        out, err, _ = tools.run(["tshark", "-n", "-r", capture, *prefs, "-Y", display_filter,
                                 "-T", "fields", "-e", "frame.number"])
        sets[display_filter] = [int(n) for n in out.split()]
        if err and err != main_error:
            errors[display_filter] = err
    return sets, errors


def _leaves(element: ET.Element) -> list[ET.Element]:
    return [e for e in element.iter("field") if len(e) == 0]


def _distinguished_name(element: ET.Element | None) -> list[list[str]]:
    """[[attribute OID, value], ...] in encoding order (the order the RDNs appear in the certificate)."""
    if element is None:
        return []
    pairs = []
    for rdn in element.iter("field"):
        if rdn.get("name") != "x509if.RelativeDistinguishedName_item_element":
            continue
        oid = next((e.get("show") for e in rdn.iter("field") if e.get("name") == "x509if.oid"), "")
        value = next((e.get("show") for e in _leaves(rdn) if e.get("name") != "x509if.oid"), "")
        pairs.append([oid, value])
    return pairs


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next((e for e in element.iter("field") if e.get("name") == name), None)


def _time(element: ET.Element | None) -> str:
    """notBefore/notAfter as tshark shows them (utcTime or generalizedTime leaf)."""
    if element is None:
        return ""
    leaves = _leaves(element)
    return leaves[0].get("show", "") if leaves else ""


def certificates(tools: Tools, capture: str, prefs: list[str]) -> dict[str, list[dict]]:
    """Per Certificate-message frame, each certificate's subject, issuer, validity, serial and SAN dNSNames.

    The flat -e x509 fields lose which string belongs to subject or issuer; tshark's PDML tree keeps it."""
    out, _, _ = tools.run(["tshark", "-n", "-r", capture, *prefs, "-Y", "tls.handshake.type == 11", "-T", "pdml"])
    result: dict[str, list[dict]] = {}
    if not out.strip():
        return result
    root = ET.fromstring(out)
    for packet in root.iter("packet"):
        number = next(e.get("show") for e in packet.iter("field") if e.get("name") == "frame.number")
        certs = []
        for cert in packet.iter("field"):
            if cert.get("name") != "x509af.signedCertificate_element":
                continue
            serial = _child(cert, "x509af.serialNumber")
            certs.append({
                "serial": serial.get("value", "") if serial is not None else "",
                "issuer": _distinguished_name(_child(cert, "x509af.issuer")),
                "subject": _distinguished_name(_child(cert, "x509af.subject")),
                "not_before": _time(_child(cert, "x509af.notBefore")),
                "not_after": _time(_child(cert, "x509af.notAfter")),
                "san_dns": [e.get("show") for e in cert.iter("field") if e.get("name") == "x509ce.dNSName"],
            })
        if certs:
            result[number] = certs
    return result


def dissection(tools: Tools, capture: str, prefs: list[str]) -> dict:
    """Packets, frame sets and certificates for one set of preferences."""
    packets, error = packet_table(tools, capture, prefs)
    sets, set_errors = frame_sets(tools, capture, prefs, error)
    result = {"packets": packets, "frame_sets": sets, "error": error}
    if set_errors:
        result["frame_set_errors"] = set_errors
    if sets["tls.handshake.type == 11"]:
        result["certificates"] = certificates(tools, capture, prefs)
    return result


def follow_streams(tools: Tools, capture: str, streams: list[str]) -> dict[str, str]:
    return {n: tools.run(["tshark", "-n", "-q", "-r", capture, "-z", f"follow,tcp,ascii,{n}"])[0] for n in streams}


def build_fixture(tools: Tools, group: str, rel: str) -> dict:
    capture = f"{group}/{rel}"
    fixture: dict = {
        "capture": capture,
        "tshark_version": tools.tshark_version,
        "capinfos_version": tools.capinfos_version,
    }
    fixture.update(dissection(tools, capture, []))
    conv_out, conv_err, _ = tools.run(["tshark", "-n", "-q", "-r", capture, "-z", "conv,tcp", "-z", "conv,udp"])
    fixture["conv"] = conv_out
    if conv_err and conv_err != fixture["error"]:
        fixture["conv_error"] = conv_err
    cap_out, cap_err, _ = tools.run(["capinfos", "-M", capture])
    fixture["capinfos"] = cap_out
    if cap_err:
        fixture["capinfos_error"] = cap_err
    keylog = keylog_for(group, rel)
    if keylog:
        fixture["keys"] = {"keylog": keylog,
                           "with_keys": dissection(tools, capture, ["-o", f"tls.keylog_file:{keylog}"])}
    if capture in FOLLOW_CAPTURES:
        column = PACKET_FIELDS.index("tcp.stream")
        streams = sorted({row[column] for row in fixture["packets"]["rows"] if row[column]}, key=int)
        fixture["follow"] = follow_streams(tools, capture, streams)
    return fixture


def write_fixture(group: str, rel: str, fixture: dict) -> Path:
    """Compact JSON; gzip (mtime 0, reproducible bytes) when large. Removes the other variant if present."""
    base = FIXTURES / group / f"{rel}.json"
    base.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(fixture, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()
    zipped = Path(f"{base}.gz")
    if len(text) > GZIP_OVER_BYTES:
        with open(zipped, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as out:
            out.write(text)
        base.unlink(missing_ok=True)
        return zipped
    base.write_bytes(text)
    zipped.unlink(missing_ok=True)
    return base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patterns", nargs="*", help="glob(s) on <group>/<relative path>; default: all captures")
    args = parser.parse_args()
    tools = Tools()
    for group, rel in find_captures(args.patterns):
        fixture = build_fixture(tools, group, rel)
        path = write_fixture(group, rel, fixture)
        note = f"  ERROR: {fixture['error'].strip()}" if fixture["error"] else ""
        print(f"{path.relative_to(DATA)}  {len(fixture['packets']['rows'])} frames  "
              f"{path.stat().st_size} bytes{note}", file=sys.stderr)


if __name__ == "__main__":
    main()
