"""`diagnose info`: capinfos-like facts about a capture plus its capture artefacts."""

from __future__ import annotations

import numpy as np

from diagnose.facts import CaptureFacts
from diagnose.pipeline import open_pass
from diagnose.progress import progress_for


def collect_info(path: str, *, verify_checksums: bool = True) -> dict:
    """Facts of the capture in one pass."""
    run = open_pass(path)
    facts = CaptureFacts(verify_checksums=verify_checksums)
    per_iface: dict[int, int] = {}
    with run.capture, progress_for(run.capture) as tick:
        for chunk in run.chunks(prepare=facts.prepare):
            facts.update(chunk.buf, chunk.table, run.flows.count, chunk.extra)
            for iface, n in zip(*np.unique(chunk.table["iface"], return_counts=True)):
                per_iface[int(iface)] = per_iface.get(int(iface), 0) + int(n)
            tick()
    summary = facts.summary(run.capture.info, run.flows.conversations)
    for entry in summary["interfaces"]:
        entry["packets"] = per_iface.get(entry["index"], 0)
    summary["tcp_streams"] = run.flows.tcp_streams
    summary["udp_streams"] = run.flows.udp_streams
    summary["conversations"] = run.flows.count
    return summary


def _num(v, unit: str = "", digits: int = 0) -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}" if isinstance(v, float) else f"{v:,}{unit}"


def format_info(s: dict) -> str:
    lines = [
        f"File name:               {s['file']}",
        f"File format:             {s['format']} {s['version']}, timestamps {s['timestamp_resolution']}",
        f"Link types:              {', '.join(s['link_types']) or 'none'}",
        f"Interfaces:              {len(s['interfaces'])}",
    ]
    for i in s["interfaces"]:
        name = i["name"] or f"#{i['index']}"
        drops = "" if i["dropped"] is None else f", dropped {i['dropped']:,}"
        lines.append(f"  {name}: {i['link_type']}, snaplen {i['snaplen']}, {i['packets']:,} packets{drops}")
    lines += [
        f"Packets:                 {s['packets']:,}",
        f"First packet:            {s['first_time'] or 'n/a'}",
        f"Last packet:             {s['last_time'] or 'n/a'}",
        f"Duration:                {s['duration_s']:.6f} s",
        f"Data size:               {_num(s['data_bytes'])} bytes ({_num(s['captured_bytes'])} captured)",
        f"Data rate:               {_num(s['data_rate_Bps'], ' bytes/s', 1)} = {_num(s['data_rate_bps'], ' bits/s', 1)}",
        f"Packet rate:             {_num(s['packet_rate_pps'], ' packets/s', 1)}",
        f"Average packet size:     {_num(s['average_packet_size'], ' bytes', 2)}",
        f"Conversations:           {s['conversations']:,} ({s['tcp_streams']:,} TCP streams, "
        f"{s['udp_streams']:,} UDP streams)",
        "",
        "Capture artefacts (a loss diagnosis must rule these out first):",
        f"  Cut by snaplen:          {s['snaplen_cut']:,}",
        f"  Interface drops:         {_drops(s)}",
        f"  Duplicated frames:       {s['duplicates']:,}{_frames(s['duplicate_frames'])}",
        f"  Offload super-segments:  {s['oversize_segments']:,}{_frames(s['oversize_frames'])}",
        f"  Bad checksums:           {_checksums(s)}",
        f"  One-sided TCP flows:     {s['one_sided_flows']:,}{_streams(s['one_sided_streams'])}",
    ]
    if s["truncated_file"]:
        lines.append("  File cut short:          yes (the last packet is incomplete)")
    if s["comments"] or s["decryption_secrets"]:
        lines.append(f"Comments: {s['comments']}, decryption secrets blocks: {s['decryption_secrets']}")
    return "\n".join(lines) + "\n"


def _drops(s: dict) -> str:
    if not any(i["dropped"] is not None for i in s["interfaces"]):
        return "not recorded in this file"
    return f"{s['interface_drops']:,}"


def _frames(frames: list[int]) -> str:
    if not frames:
        return ""
    shown = ",".join(str(f) for f in frames[:8])
    return f" (frames {shown}{',...' if len(frames) > 8 else ''})"


def _streams(streams: list[int]) -> str:
    return f" (tcp.stream {','.join(str(s) for s in streams[:8])})" if streams else ""


def _checksums(s: dict) -> str:
    if s["bad_checksums"] is None:
        return "not checked"
    text = f"{s['bad_checksums']:,}"
    host = s["checksum_offload_host"]
    if host:
        text += f", all sent by {host}: checksum offload on the capture host, not corruption"
    return text
