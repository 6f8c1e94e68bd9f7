"""diagnose follow on TLS streams: with a key log (--keylog, $SSLKEYLOGFILE, or decryption secrets inside a pcapng) the
plaintext equals tshark's `-z follow,tls,<format>,N`; without keys the TCP bytes and a note; secrets never shown.

The oracle is tests/data/fixtures/follow_tls (tshark 4.0.17, see the fixtures README). Two header lines are
compared differently, on purpose:
* `Node 1:` -- tshark 4.0's TLS tap stores only the address of the first sender it sees, so it prints `Node 1: :0`
  for every stream. diagnose prints the peer (the stream's other endpoint), which is what the line is for.
* `Node 0:` when nothing in the stream decrypted -- tshark prints `:0`; diagnose prints the TCP follow's Node 0
  (the first packet's sender), so the header still says which connection it is.
Everything else (Node 0 when something decrypted, every chunk, its direction, length and bytes) must be identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.report.follow import follow, follow_stream, follow_tls_stream, follow_with_notes, render
from oracles.fixtures import DATA_ROOT as DATA, data_path
from keylog_secrets import secret_pieces

FIXTURES = DATA / "fixtures" / "follow_tls"
CAPTURES = sorted(p.relative_to(FIXTURES).as_posix()[: -len(".json")] for p in FIXTURES.rglob("*.json"))
FORMATS = {"ascii": "follow", "hex": "follow_hex", "raw": "follow_raw"}
APPLICATION_DATA = "23"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def keylogs_of(fix: dict) -> list[str]:
    return [str(DATA / fix["keylog"])] if fix["keylog"] else []


def cases():
    for name in CAPTURES:
        for stream in fixture(name)["follow"]:
            yield name, int(stream)


def test_fixtures_cover_lab_and_corpus_key_logs_and_dsbs():
    assert {"lab/tls_decrypt_keylog.pcap", "corpus/illustrated-tls13/capture.pcap", "corpus/scapy/tls_nss_example.pcap",
            "corpus/derived/illustrated-tls13-dsb.pcapng", "corpus/derived/tls_nss_example-dsb.pcapng"} <= set(CAPTURES)
    with_plaintext = [(n, s) for n, s in cases() if fixture(n)["follow"][str(s)].count("\n") > 7]
    assert len(with_plaintext) >= 9  # both TLS 1.2 and TLS 1.3 sessions carry data in these


def split_header(text: str) -> tuple[list[str], list[str]]:
    lines = text.split("\n")
    return lines[:6], lines[6:]


@pytest.mark.parametrize("name,stream", list(cases()))
@pytest.mark.parametrize("fmt", FORMATS)
def test_plaintext_equals_tshark_follow_tls(name, stream, fmt):
    fix = fixture(name)
    expected = fix[FORMATS[fmt]][str(stream)]
    path = str(DATA / name)
    ours = follow(path, stream, fmt, layer="tls", keylogs=keylogs_of(fix), use_environment=False)
    ours_head, ours_body = split_header(ours)
    want_head, want_body = split_header(expected)
    assert ours_body == want_body
    assert ours_head[:4] == want_head[:4]  # blank line, rule, "Follow: tls,<fmt>", "Filter: tcp.stream eq N"
    assert want_head[5] == "Node 1: :0"  # tshark 4.0's quirk (module docstring)
    tcp_nodes = follow_stream(path, stream).nodes
    if want_head[4] == "Node 0: :0":  # nothing decrypted: the TCP nodes
        assert ours_head[4:6] == [f"Node 0: {tcp_nodes[0]}", f"Node 1: {tcp_nodes[1]}"]
    else:
        assert ours_head[4] == want_head[4]
        node0 = want_head[4].split(": ", 1)[1]
        assert ours_head[5] == f"Node 1: {next(n for n in tcp_nodes if n != node0)}"


@pytest.mark.parametrize("name,stream", list(cases()))
def test_chunks_belong_to_the_frame_that_completed_each_record(name, stream):
    """tshark with the keys labels each decrypted record with its inner type: the frames holding application-data
    records are the frames of the followed chunks, one per record (streams tshark shows no plaintext for skipped)."""
    fix = fixture(name)
    if fix["follow"][str(stream)].count("\n") <= 7:
        return
    expected = [frame for frame, s, types in fix["tls_records"] if s == stream
                for t in types.split(",") if t == APPLICATION_DATA]
    _, view = follow_tls_stream(str(DATA / name), stream, keylogs_of(fix), use_environment=False)
    assert [c.frame for c in view.result.chunks] == expected


@pytest.mark.parametrize("name,stream", list(cases()))
def test_auto_shows_plaintext_when_the_stream_decrypts(name, stream):
    fix = fixture(name)
    path = str(DATA / name)
    auto, notes = follow_with_notes(path, stream, keylogs=keylogs_of(fix), use_environment=False)
    tls = follow(path, stream, layer="tls", keylogs=keylogs_of(fix), use_environment=False)
    tcp = render(follow_stream(path, stream))
    _, view = follow_tls_stream(path, stream, keylogs_of(fix), use_environment=False)
    assert auto == (tls if view.decrypted else tcp)
    if view.decrypted and not view.result.chunks:  # e.g. a handshake that ended in an (encrypted) alert
        assert notes == [f"tcp.stream {stream}: the TLS session was decrypted but carried no application data"]


# ---- without keys, wrong keys ----------------------------------------------------------------------------------------
LAB = "tls_decrypt_keylog"


def run_cli(*args, env_keylog: str | None = None):
    env = {k: v for k, v in os.environ.items() if k != "SSLKEYLOGFILE"}
    if env_keylog is not None:
        env["SSLKEYLOGFILE"] = env_keylog
    done = subprocess.run([sys.executable, "-m", "diagnose", "follow", *map(str, args)], capture_output=True, env=env)
    # decoded by hand: text=True would turn the plaintext's CR LF into LF
    done.stdout, done.stderr = done.stdout.decode("utf-8", "surrogateescape"), done.stderr.decode()
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_without_keys_the_tcp_bytes_and_a_one_line_note():
    capture = data_path("lab", f"{LAB}.pcap")
    done = run_cli(capture, "-s", 1)
    assert done.returncode == 0
    assert done.stdout == render(follow_stream(str(capture), 1))
    assert done.stdout.splitlines()[2] == "Follow: tcp,ascii"
    assert done.stderr == ("warning: tcp.stream 1 is TLS and no key log was given: the encrypted TCP bytes are shown "
                           "(give --keylog FILE, set SSLKEYLOGFILE, or use a pcapng with decryption secrets)\n")


def test_tls_without_keys_prints_tshark_header_only():
    capture = data_path("lab", f"{LAB}.pcap")
    done = run_cli(capture, "-s", 0, "--tls")
    assert done.returncode == 0
    assert done.stdout.splitlines()[2:] == ["Follow: tls,ascii", "Filter: tcp.stream eq 0",
                                            "Node 0: 10.99.1.2:53384", "Node 1: 10.99.2.2:8443", "=" * 67]
    assert "there is no plaintext to show" in done.stderr


def test_keylog_option_and_environment_variable_decrypt_alike(tmp_path):
    capture = data_path("lab", f"{LAB}.pcap")
    keys = data_path("lab", f"{LAB}.keys")
    expected = fixture(f"lab/{LAB}.pcap")["follow"]["1"].split("\n")[6:]
    by_option = run_cli(capture, "-s", 1, "--keylog", keys)
    by_environment = run_cli(capture, "-s", 1, env_keylog=str(keys))
    for done in (by_option, by_environment):
        assert done.returncode == 0 and done.stderr == ""
        assert done.stdout.split("\n")[6:] == expected
    forced_tcp = run_cli(capture, "-s", 1, "--tcp", env_keylog=str(keys))
    assert forced_tcp.stdout == render(follow_stream(str(capture), 1))


def test_keylog_with_tcp_is_a_usage_error():
    done = run_cli(data_path("lab", f"{LAB}.pcap"), "-s", 1, "--tcp", "--keylog", data_path("lab", f"{LAB}.keys"))
    assert done.returncode == 2 and "--tcp" in done.stderr


def test_dsb_capture_decrypts_without_a_key_log():
    name = "corpus/derived/tls_nss_example-dsb.pcapng"
    done = run_cli(DATA / name, "-s", 1, "--json")
    assert done.returncode == 0 and done.stderr == ""
    data = json.loads(done.stdout)
    assert data["layer"] == "tls"
    assert [(c["node"], c["length"]) for c in data["chunks"]] == [(1, 32), (0, 1777)]
    assert data["chunks"][0]["text"] == "GET /pki/srv_key.pem HTTP/1.0\r\n\n"  # as sent


def test_key_log_of_another_capture_warns_and_shows_tcp_bytes():
    capture = data_path("lab", f"{LAB}.pcap")
    done = run_cli(capture, "-s", 0, "--keylog", data_path("lab", "slow_ttfb_tls.keys"))
    assert done.returncode == 0
    assert done.stdout == render(follow_stream(str(capture), 0))
    assert done.stderr == ("warning: tcp.stream 0 is TLS and the key log (1 client randoms) did not decrypt it "
                           "(not decrypted: no key log line for its client random): the encrypted TCP bytes are "
                           "shown\n")


def test_edited_and_broken_key_log_lines_warn_without_crashing(tmp_path):
    capture = data_path("lab", f"{LAB}.pcap")
    lines = data_path("lab", f"{LAB}.keys").read_text().splitlines()
    edited = []
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            secret = parts[2]
            parts[2] = ("0" if secret[0] != "0" else "1") + secret[1:]  # one digit changed: the MACs fail
        edited.append(" ".join(parts))
    bad = tmp_path / "bad.keys"
    bad.write_text("\n".join(edited) + "\nCLIENT_RANDOM zz\nnot a key log line\n")
    done = run_cli(capture, "-s", 1, "--keylog", bad)
    assert done.returncode == 0
    assert done.stdout == render(follow_stream(str(capture), 1))
    notes = done.stderr.splitlines()
    assert notes[0] == f"warning: key log {bad}:{len(edited) + 1}: CLIENT_RANDOM: expected 3 fields, found 2"
    assert notes[1] == f"warning: key log {bad}:{len(edited) + 2}: not a key log line (no LABEL at the start)"
    assert notes[2].startswith("warning: tcp.stream 1 is TLS and the key log (2 client randoms) did not decrypt it "
                               "(not decrypted: authentication failed")
    assert len(notes) == 3


def test_missing_key_log_file_is_a_usage_error():
    done = run_cli(data_path("lab", f"{LAB}.pcap"), "-s", 1, "--keylog", "/nonexistent/keys.txt")
    assert done.returncode == 2 and "key log file not found" in done.stderr


# ---- secrets ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["lab/tls_decrypt_keylog.pcap", "corpus/scapy/tls_nss_example.pcap"])
def test_no_secret_in_any_output(name):
    fix = fixture(name)
    keys = DATA / fix["keylog"]
    pieces = secret_pieces(keys)
    assert len(pieces) > 10
    texts = []
    for stream in (0, 1):
        for extra in (["-F", "raw"], ["-F", "hex"], ["--json"], ["--tcp", "-F", "raw"]):
            keylog = [] if "--tcp" in extra else ["--keylog", keys]
            done = run_cli(DATA / name, "-s", stream, *keylog, *extra)
            assert done.returncode == 0
            texts.append(done.stdout + done.stderr)
    text = "\n".join(texts)
    assert "HTTP/1." in text  # the plaintext is there ...
    low = text.lower()
    assert [p for p in pieces if p in low or p.upper() in text] == []  # ... the secrets are not
