"""`diagnose list/count -f/-Y` and `diagnose filter`: the CLI selects tshark's/tcpdump's frames, wrong filters are
one line with a caret and exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from oracles.fixtures import data_path, load_tshark


def run(*args):
    return subprocess.run([sys.executable, "-m", "diagnose", *map(str, args)], capture_output=True, text=True)


@pytest.mark.parametrize("name,dfilter", [
    ("syn_drop.pcap", "tcp.analysis.retransmission"),
    ("http_404_and_500.pcap", "http.response.code >= 400"),
    ("dns_nxdomain.pcap", "dns.flags.rcode == 3"),
    ("tls_version_mismatch.pcap", "tls.alert_message"),
    ("zero_window.pcap", "tcp.analysis.zero_window"),
])
def test_count_equals_tshark_frame_set(name, dfilter):
    expected = load_tshark("lab", name)["frame_sets"][dfilter]
    done = run("count", data_path("lab", name), "-Y", dfilter)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(expected)


def test_decrypted_http_needs_the_key_log():
    capture = data_path("lab", "tls_decrypt_keylog.pcap")
    keys = data_path("lab", "tls_decrypt_keylog.keys")
    with_keys = load_tshark("lab", "tls_decrypt_keylog.pcap")["keys"]["with_keys"]["frame_sets"]["http"]
    assert int(run("count", capture, "-Y", "http", "--keylog", keys).stdout) == len(with_keys) == 6
    assert int(run("count", capture, "-Y", "http").stdout) == 0


def test_capture_filter_equals_tcpdump():
    oracle = load_tshark("corpus", "zeek/get.pcap")
    done = run("count", data_path("corpus", "zeek", "get.pcap"), "-f", "port 80")
    assert int(done.stdout) == len(oracle["packets"]["rows"])  # every frame of that HTTP capture is on port 80


@pytest.mark.parametrize("args,column", [
    (["-Y", "tcp.flgs.syn == 1"], 1),
    (["-Y", "tcp.port == 70000"], 13),
    (["-f", "tcp port eighty"], 10),
])
def test_bad_filter_is_one_line_with_caret(args, column):
    done = run("list", data_path("lab", "syn_drop.pcap"), *args)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert f":{column}: error:" in lines[0]
    assert lines[2].index("^") - 2 == column - 1  # caret under the bad column (two spaces of indent)
    assert not done.stdout


def test_filter_command():
    assert run("filter", "--check", "ip.addr == 10.0.0.1 && tcp.port in {80, 443}").returncode == 0
    assert run("filter", "--check", "ip.addr ==").returncode == 2
    done = run("filter", "-f", "--bytecode", "d", "tcp[tcpflags] & tcp-rst != 0")
    assert done.returncode == 0 and done.stdout.startswith("(000) ldh      [12]")
