#!/usr/bin/env python3
"""Regenerate tshark's Follow TLS Stream answers: tests/data/fixtures/follow_tls/<group>/<capture>.json.

Developer tool, never run by the test suite (it needs tshark 4.0.17). For every capture that ships a key log (lab
`<stem>.keys`, corpus manifest `keylog`) or carries decryption secrets (corpus/derived/*-dsb.pcapng), and every
tcp.stream in it:

    tshark -n -q -r F [-o tls.keylog_file:KEYS] -z follow,tls,FORMAT,N      (FORMAT: ascii, hex, raw)

and the content types of every TLS record per frame (after decryption: the inner type), which tells the frames
whose decrypted application data tshark follows:

    tshark -n -r F [-o tls.keylog_file:KEYS] -Y tls -T fields -e frame.number -e tcp.stream -e tls.record.content_type

run from tests/data with TZ=UTC, LC_ALL=C.UTF-8 and an empty WIRESHARK_CONFIG_DIR (default preferences).

    python3 tests/oracles/make_follow_tls_fixtures.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "fixtures" / "follow_tls"
ROOT_WARNING = re.compile(r'^Running as user "root" and group "root"\. This could be dangerous\.\n?', re.M)

# (group, capture relative to the group, key log relative to tests/data or None when the capture carries a DSB)
CAPTURES = [
    ("lab", "tls_decrypt_keylog.pcap", "lab/tls_decrypt_keylog.keys"),
    ("lab", "slow_ttfb_tls.pcap", "lab/slow_ttfb_tls.keys"),
    ("lab", "tls_expired_cert.pcap", "lab/tls_expired_cert.keys"),
    ("lab", "tls_wrong_host.pcap", "lab/tls_wrong_host.keys"),
    ("corpus", "illustrated-tls13/capture.pcap", "corpus/illustrated-tls13/keylog.txt"),
    ("corpus", "scapy/tls_nss_example.pcap", "corpus/scapy/tls_nss_example.keys.txt"),
    ("corpus", "derived/illustrated-tls13-dsb.pcapng", None),
    ("corpus", "derived/tls_nss_example-dsb.pcapng", None),
]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="wireshark-defaults-") as config:
        env = dict(os.environ, TZ="UTC", LC_ALL="C.UTF-8", WIRESHARK_CONFIG_DIR=config)

        def run(argv: list[str]) -> str:
            done = subprocess.run(argv, cwd=DATA, env=env, capture_output=True, check=True)
            stderr = ROOT_WARNING.sub("", done.stderr.decode())
            if stderr:
                raise SystemExit(f"{' '.join(argv)}: {stderr}")
            return done.stdout.decode("utf-8", "surrogateescape")

        version = run(["tshark", "--version"]).splitlines()[0]
        for group, rel, keylog in CAPTURES:
            capture = f"{group}/{rel}"
            streams = sorted({int(s) for s in run(["tshark", "-n", "-r", capture, "-Y", "tcp", "-T", "fields",
                                                    "-e", "tcp.stream"]).split()})
            options = ["-o", f"tls.keylog_file:{keylog}"] if keylog else []
            fixture = {"capture": capture, "keylog": keylog, "tshark_version": version,
                       "command": f"tshark -n -q -r {capture} {' '.join(options)} -z follow,tls,FORMAT,N".replace(
                           "  ", " ")}
            records = run(["tshark", "-n", "-r", capture, *options, "-Y", "tls", "-T", "fields", "-e", "frame.number",
                           "-e", "tcp.stream", "-e", "tls.record.content_type"])
            fixture["tls_records"] = [[int(frame), int(stream), types] for frame, stream, types in
                                      (line.split("\t") for line in records.splitlines())]
            for fmt, key in (("ascii", "follow"), ("hex", "follow_hex"), ("raw", "follow_raw")):
                fixture[key] = {str(n): run(["tshark", "-n", "-q", "-r", capture, *options,
                                             "-z", f"follow,tls,{fmt},{n}"]) for n in streams}
            path = OUT / group / f"{rel}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
            print(path.relative_to(DATA), len(streams), "streams")


if __name__ == "__main__":
    main()
