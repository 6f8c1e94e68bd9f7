"""`capture.*` fields: the capture facts (diagnose.facts summary) as display-filter fields.

They hold one value for the whole file, so they read the same on every row of any context (a packet chunk, the
flow table, the single capture row). The engine puts the facts dict in `ctx.extra["capture_facts"]`; during the
packet pass it is the summary so far, at the end of the pass the final one.
"""

from __future__ import annotations

import numpy as np

from diagnose.fields import FieldType, Occurrence, lookup, register
from diagnose.fields.registry import Field

# name, type, description, key in the facts summary, scale (seconds -> ns for times)
CAPTURE_FIELDS = [
    ("capture.packets", FieldType.UINT, "packets in the capture", "packets", None),
    ("capture.bytes", FieldType.UINT, "bytes on the wire of all packets", "data_bytes", None),
    ("capture.duration", FieldType.RELTIME, "time from the first to the last packet", "duration_s", 1e9),
    ("capture.start", FieldType.TIME, "time of the first packet", "first_time_epoch", 1e9),
    ("capture.end", FieldType.TIME, "time of the last packet", "last_time_epoch", 1e9),
    ("capture.snaplen", FieldType.UINT, "largest snapshot length of the capture's interfaces", "snaplen", None),
    ("capture.snaplen_cut", FieldType.UINT, "packets cut short by the snapshot length", "snaplen_cut", None),
    ("capture.interface_drops", FieldType.UINT, "packets the capture interface dropped (pcapng statistics; absent "
     "when the file does not record them)", "interface_drops", None),
    ("capture.os_drops", FieldType.UINT, "packets the OS dropped before the capture saw them", "os_drops", None),
    ("capture.duplicates", FieldType.UINT, "byte-identical frames seen again within a few ms (SPAN/bridge copies)",
     "duplicates", None),
    ("capture.oversize_segments", FieldType.UINT, "segments larger than the MSS or MTU: captured before TSO/GSO split "
     "them or after GRO merged them", "oversize_segments", None),
    ("capture.bad_checksums", FieldType.UINT, "packets with a wrong IP/TCP/UDP checksum", "bad_checksums", None),
    ("capture.checksum_offload_host", FieldType.STRING, "the one host that sent every bad checksum (checksum offload "
     "on the capture host)", "checksum_offload_host", None),
    ("capture.one_sided_flows", FieldType.UINT, "TCP flows seen in one direction only although they carry data or "
     "ACKs (asymmetric capture)", "one_sided_flows", None),
    ("capture.time_order_violations", FieldType.UINT, "packets timestamped earlier than the packet before them",
     "time_order_violations", None),
    ("capture.truncated_headers", FieldType.UINT, "packets whose headers are cut off", "truncated_headers", None),
    ("capture.malformed", FieldType.UINT, "packets with impossible header values", "malformed", None),
    ("capture.undecoded", FieldType.UINT, "frames of a link type that is not decoded", "undecoded_frames", None),
    ("capture.truncated_file", FieldType.BOOL, "the file ends in the middle of a packet", "truncated_file", None),
    ("capture.tcp_streams", FieldType.UINT, "TCP conversations (tcp.stream values)", "tcp_streams", None),
    ("capture.udp_streams", FieldType.UINT, "UDP conversations (udp.stream values)", "udp_streams", None),
    ("capture.conversations", FieldType.UINT, "conversations of every protocol", "conversations", None),
    ("capture.decryption_secrets", FieldType.UINT, "decryption secrets blocks (TLS key logs) in the file",
     "decryption_secrets", None),
]

_DTYPES = {FieldType.UINT: np.int64, FieldType.RELTIME: np.int64, FieldType.TIME: np.int64, FieldType.BOOL: np.bool_,
           FieldType.STRING: object}


def _extractor(key: str, ftype: FieldType, scale: float | None):
    def extract(ctx) -> list[Occurrence]:
        facts = ctx.extra.get("capture_facts") or {}
        value = facts.get(key)
        if value is None:
            return [Occurrence(np.zeros(ctx.n, _DTYPES[ftype]), np.zeros(ctx.n, bool))]
        if scale is not None:
            value = int(round(float(value) * scale))
        values = np.empty(ctx.n, object) if ftype == FieldType.STRING else np.empty(ctx.n, _DTYPES[ftype])
        values[:] = value
        return [Occurrence(values, np.ones(ctx.n, bool))]
    return extract


def register_capture_fields() -> None:
    """Register the capture.* fields once (they are computed by diagnose.facts, read by rules and -Y alike)."""
    for name, ftype, description, key, scale in CAPTURE_FIELDS:
        if lookup(name) is None:
            register(Field(name, ftype, description, _extractor(key, ftype, scale), protocol="capture"))


register_capture_fields()
