#!/usr/bin/env python3
"""Developer script (needs tshark): what tshark reads back from files written by `diagnose list -w`.

For each case it writes the output with the current diagnose, stores its sha256 and tshark's view of it
(frame fields; for pcapng with decryption secrets, the TLS handshake frames tshark can decrypt), in
tests/data/fixtures/writer/<case>.json. tests/test_writer.py rewrites the same file, checks the hash, and checks
that tshark's stored view matches the source capture. Also (re)builds tests/data/writer/commented.pcapng, a small
pcapng with packet comments, a section comment and a decryption-secrets block, from a lab capture.
Run from the repository root: PYTHONPATH=... python3 tests/oracles/make_writer_fixtures.py
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
OUT = DATA / "fixtures" / "writer"
sys.path.insert(0, str(ROOT / "tests"))

CASES = {
    # name: (source relative to tests/data, output suffix, extra list arguments)
    "http_404_and_500-pcapng": ("lab/http_404_and_500.pcap", ".pcapng", []),
    "http_404_and_500-pcap": ("lab/http_404_and_500.pcap", ".pcap", []),
    "multi-interface-pcapng": ("corpus/zeek/pcapng-multi-interface.pcapng", ".pcapng", []),
    "tls_nss_example-dsb-pcapng": ("corpus/derived/tls_nss_example-dsb.pcapng", ".pcapng", []),
    "commented-pcapng": ("writer/commented.pcapng", ".pcapng", []),
    "retransmissions-first50-pcap": ("lab/retransmissions.pcap", ".pcap", ["-c", "50"]),
}
# TLS 1.3 Certificate and Finished messages are encrypted: tshark shows them only when it has the secrets.
DECRYPTED_ONLY = "tls.handshake.type == 11 || tls.handshake.type == 20"
FIELDS = ["frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id", "frame.comment",
          "ip.src", "ip.dst", "tcp.seq_raw"]


def build_commented() -> None:
    """Lab frames with comments on frames 2 and 5, a section comment and the lab key log as a DSB."""
    import pcapbuild as pb
    from diagnose.capture import open_capture

    frames = []
    with open_capture(str(DATA / "lab" / "tls_decrypt_keylog.pcap")) as cap:
        for chunk in cap.chunks():
            for r in chunk.table[:12]:
                frames.append((int(r["ts"]) // 1000, chunk.buf[r["data"]: r["data"] + r["caplen"]].tobytes()))
            break
    keys = (DATA / "lab" / "tls_decrypt_keylog.keys").read_bytes()
    data = pb.shb(options=pb.option(1, b"built for the writer test") + pb.end_of_options())
    data += pb.idb(1, 262144, name="c0") + pb.dsb(0x544C534B, keys)
    for i, (ts_us, raw) in enumerate(frames, start=1):
        data += pb.epb(0, ts_us, raw, comment={2: "client hello here", 5: "ünïcode comment"}.get(i))
    (DATA / "writer" / "commented.pcapng").write_bytes(data)


def tshark_fields(path: Path) -> list[list[str]]:
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t",
                          *sum((["-e", f] for f in FIELDS), [])], capture_output=True, text=True, check=True,
                         env={**os.environ, "TZ": "UTC"}).stdout
    return [line.split("\t") for line in out.splitlines()]


def tshark_frames(path: Path, dfilter: str) -> list[int]:
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-Y", dfilter, "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, check=True).stdout
    return [int(x) for x in out.split()]


def main() -> None:
    build_commented()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (source, suffix, extra) in CASES.items():
            target = Path(tmp) / f"{name}{suffix}"
            subprocess.run([sys.executable, "-m", "diagnose", "list", str(DATA / source), "-w", str(target), *extra],
                           check=True)
            fixture = {
                "source": source, "suffix": suffix, "args": extra,
                "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
                "tshark_fields": FIELDS, "tshark_rows": tshark_fields(target),
                "decrypted_handshake_frames": tshark_frames(target, DECRYPTED_ONLY),
                "decrypted_handshake_frames_of_source": tshark_frames(DATA / source, DECRYPTED_ONLY),
                "tshark_version": subprocess.run(["tshark", "--version"], capture_output=True,
                                                 text=True).stdout.splitlines()[0],
            }
            (OUT / f"{name}.json").write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
            print(name, len(fixture["tshark_rows"]), "frames")


if __name__ == "__main__":
    main()
