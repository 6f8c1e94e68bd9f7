"""Bad input never produces a traceback: one line naming the file (and the byte offset for damaged data), exit
code 2. A capture cut off mid-packet still yields every complete packet, then a warning, exit 0."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pcapbuild as pb
from oracles.fixtures import data_path

COMMANDS = (["info"], ["flows"], ["list"], [])  # [] = the main form `diagnose CAPTURE`


def run(*args):
    return subprocess.run([sys.executable, "-m", "diagnose", *map(str, args)], capture_output=True, text=True)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def bad_inputs(tmp):
    empty = tmp / "empty.pcap"
    empty.write_bytes(b"")
    text = tmp / "notes.txt"
    text.write_text("this is not a capture\n")
    good = pb.shb() + pb.idb() + pb.epb(0, 1, bytes(60))
    bad = bytearray(pb.epb(0, 2, bytes(64)))
    bad[4:8] = (10).to_bytes(4, "little")
    corrupt = tmp / "badblock.pcapng"
    corrupt.write_bytes(good + bytes(bad))
    return {
        "empty": (empty, "empty file", None),
        "text": (text, "not a pcap or pcapng capture", None),
        "bad block length": (corrupt, "corrupt", len(good)),
        "missing": (tmp / "missing.pcap", "no such file", None),
        "directory": (tmp, "is a directory", None),
    }


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "main")
@pytest.mark.parametrize("case", ["empty", "text", "bad block length", "missing", "directory"])
def test_bad_input_is_one_line_exit_2(tmp_path, command, case):
    path, needle, offset = bad_inputs(tmp_path)[case]
    done = run(*command, path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = error_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    assert str(path) in lines[0] and needle in lines[0]
    if offset is not None:
        assert f"byte {offset}" in lines[0]


def test_cut_off_capture_lists_every_complete_packet_then_warns(tmp_path):
    source = data_path("corpus", "derived", "reassembly-truncated-midrecord.pcap")
    done = run("list", source)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 49  # tshark and tcpdump also read 49 packets
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith("warning:") and "cut short" in lines[0]
    assert "Traceback" not in done.stderr


def test_unknown_link_type_is_listed_with_one_warning(tmp_path):
    source = data_path("corpus", "tcpdump", "unsupported-link-type-160.pcap")
    done = run("list", source)
    assert done.returncode == 0
    packet_lines = [line for line in done.stdout.splitlines() if not line.startswith("\t")]  # hex lines are indented
    assert len(packet_lines) == 1 and "160" in packet_lines[0]
    assert len(error_lines(done.stderr)) == 1 and "LINKTYPE_160" in done.stderr


@pytest.mark.parametrize("args,needle", [
    (["list", "-t", "sideways"], "unknown time format"),
    (["list", "-c", "-3"], "-c"),
    (["flows", "--nope"], "No such option"),
])
def test_bad_options(args, needle):
    done = run(*args[:1], data_path("lab", "syn_drop.pcap"), *args[1:])
    assert done.returncode == 2 and needle in done.stderr and "Traceback" not in done.stderr


def test_stdin_and_pipe_closed_early():
    raw = data_path("lab", "retransmissions.pcap").read_bytes()
    done = subprocess.run([sys.executable, "-m", "diagnose", "list", "-c", "3", "-"], input=raw, capture_output=True)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 3
    # `diagnose list big | head -1`: the reader leaves, we stop quietly
    shell = f"{sys.executable} -m diagnose list {data_path('lab', 'retransmissions.pcap')} | head -1"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    assert len(done.stdout.splitlines()) == 1 and "Traceback" not in done.stderr


def test_version_and_main_form():
    from diagnose import __version__

    assert run("--version").stdout.strip() == f"diagnose {__version__}"
    done = run(data_path("lab", "syn_drop.pcap"))  # the main form: a diagnosis, exit 1 for an error finding
    assert done.returncode == 1 and "10.99.2.2:8081" in done.stdout and "7 SYN" in done.stdout
    done = run(data_path("lab", "healthy_http.pcap"), "--playbook", "tcp")
    assert done.returncode == 0, done.stdout
