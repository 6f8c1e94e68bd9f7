"""`diagnose list -w`: the written file is exactly the one tshark read back (stored), and tshark saw the packets of
the source: same times, lengths, interfaces, comments, and (through kept decryption secrets) the same decrypted
TLS handshake."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from oracles.fixtures import data_path, load_tshark, packet_columns
from diagnose.capture import open_capture

CASES = sorted(p.stem for p in data_path("fixtures", "writer").glob("*.json"))


def fixture(name):
    return json.loads(data_path("fixtures", "writer", f"{name}.json").read_text())


def write(source, target, extra=()):
    return subprocess.run([sys.executable, "-m", "diagnose", "list", str(source), "-w", str(target), *extra],
                          capture_output=True, text=True)


def frames(path):
    out = []
    with open_capture(str(path)) as cap:
        for chunk in cap.chunks():
            for r in chunk.table:
                out.append((int(r["ts"]), int(r["wirelen"]), int(r["iface"]),
                            chunk.buf[r["data"]: r["data"] + r["caplen"]].tobytes()))
        return out, cap.info


@pytest.mark.parametrize("name", CASES)
def test_written_file_is_what_tshark_read(tmp_path, name):
    fx = fixture(name)
    target = tmp_path / f"out{fx['suffix']}"
    done = write(data_path(fx["source"]), target, fx["args"])
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == fx["sha256"]
    # what tshark saw in our file is the source's packets
    cols = dict(zip(fx["tshark_fields"], zip(*fx["tshark_rows"])))
    src, src_info = frames(data_path(fx["source"]))
    limit = int(fx["args"][1]) if fx["args"] else len(src)
    assert len(fx["tshark_rows"]) == limit
    assert [int(t.replace(".", "")) for t in cols["frame.time_epoch"]] == [ts for ts, *_ in src[:limit]]
    assert [int(x) for x in cols["frame.len"]] == [w for _, w, *_ in src[:limit]]
    # pcap has no interface ids (tshark leaves the field empty): all frames are interface 0
    assert [int(x or 0) for x in cols["frame.interface_id"]] == [i for _, _, i, _ in src[:limit]]
    comments = {int(n): c for n, c in zip(cols["frame.number"], cols["frame.comment"]) if c}
    if fx["suffix"] == ".pcapng":
        assert comments == {k: ",".join(v) for k, v in src_info.comments.items()}
        assert fx["decrypted_handshake_frames"] == fx["decrypted_handshake_frames_of_source"]


@pytest.mark.parametrize("name", CASES)
def test_round_trip_through_our_reader(tmp_path, name):
    fx = fixture(name)
    target = tmp_path / f"out{fx['suffix']}"
    assert write(data_path(fx["source"]), target, fx["args"]).returncode == 0
    src, src_info = frames(data_path(fx["source"]))
    got, info = frames(target)
    limit = int(fx["args"][1]) if fx["args"] else len(src)
    assert got == src[:limit]
    if fx["suffix"] == ".pcapng":
        assert info.comments == src_info.comments
        assert [(s.secret_type, s.data) for s in info.secrets] == [(s.secret_type, s.data) for s in src_info.secrets]
        assert [(i.linktype, i.name) for i in info.interfaces] == [(i.linktype, i.name) for i in src_info.interfaces]


def test_tshark_fixture_of_source_agrees():
    """The stored tshark view of the source (made separately) has the same timestamps as our written copy."""
    fx = fixture("http_404_and_500-pcapng")
    source_cols = packet_columns(load_tshark("lab", "http_404_and_500.pcap"))
    assert [r[1] for r in fx["tshark_rows"]] == source_cols["frame.time_epoch"]


def test_never_overwrites(tmp_path):
    source = data_path("lab", "syn_drop.pcap")
    target = tmp_path / "exists.pcapng"
    target.write_bytes(b"precious")
    done = write(source, target)
    assert done.returncode == 2 and "exists" in done.stderr and target.read_bytes() == b"precious"
    assert "Traceback" not in done.stderr
    copy = tmp_path / "in.pcap"
    copy.write_bytes(source.read_bytes())
    done = subprocess.run([sys.executable, "-m", "diagnose", "list", str(copy), "-w", str(copy), "--overwrite"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and copy.read_bytes() == source.read_bytes()
    assert write(source, target, ["--overwrite"]).returncode == 0 and target.read_bytes() != b"precious"


def test_pcap_refuses_mixed_link_types(tmp_path):
    done = write(data_path("lab", "syn_drop.pcap"), tmp_path / "ok.pcap")
    assert done.returncode == 0
    mixed = tmp_path / "mixed.pcapng"
    import pcapbuild as pb

    mixed.write_bytes(pb.shb() + pb.idb(1) + pb.idb(113) + pb.epb(0, 1, bytes(60)) + pb.epb(1, 2, bytes(60)))
    done = write(mixed, tmp_path / "out.pcap")
    assert done.returncode == 2 and "link type" in done.stderr and not (tmp_path / "out.pcap").exists()
