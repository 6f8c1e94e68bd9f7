"""`diagnose list` prints what `tcpdump -n` prints, line by line.

The oracle is tcpdump 4.99.3's stored output (tests/oracles/make_tcpdump_fixtures.py) for every lab capture, a set of
corpus captures with other link types and protocols, and small crafted captures (TCP options and odd headers,
relative sequence numbers, ICMP/ICMPv6, ARP, tunnels, fragments, DNS). Each file is compared for every stored variant:
default time stamps, -tt, -ttt, -tttt, -ttttt and -X (hex/ASCII dump). Whole lines are compared; the differences we
keep on purpose are listed below with their reason, and each listed difference must still occur.
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np
import pytest

from diagnose.listing import link as listing_link
from diagnose.capture import open_capture
from diagnose.listing import TIME_FORMATS, ListingState, format_packets
from diagnose.packet import new_table

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "fixtures" / "tcpdump"
TIME_FORMAT_OF_VARIANT = {"default": "local", "tt": "epoch", "ttt": "delta", "tttt": "date", "ttttt": "relative",
                          "X": "local"}

# (capture, text in tcpdump's line, text in our line, why we differ)
KNOWN_DIFFERENCES = [
    ("corpus/tcpdump/unsupported-link-type-160", "UNSUPPORTED", "LINKTYPE_160 frame (link type 160 not decoded)",
     "for a link type it cannot decode tcpdump prints a bare UNSUPPORTED; we name the link type (both then dump the "
     "bytes)"),
]
# tcpdump -X prints the bytes of an undecoded link type twice (its default dump, then the -X dump); we print them once
DOUBLE_DUMP = {"corpus/tcpdump/unsupported-link-type-160"}

# SLL2 frames carry an interface index; tcpdump (and we) name it by the machine's own interfaces. The stored output
# was made where index 1 is `lo` and index 26 does not exist; pin that mapping so the test does not depend on the
# machine it runs on.
MACHINE_INTERFACES = {1: "lo"}


def _fixture_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*.txt*") if p.name != "VERSION.txt")


def _split_name(fixture: Path) -> tuple[str, str]:
    name = fixture.name.removesuffix(".gz").removesuffix(".txt")
    stem, variant = name.rsplit(".", 1)
    return stem, variant


def _capture_of(fixture: Path) -> Path:
    stem, _ = _split_name(fixture)
    rel = fixture.parent.relative_to(FIXTURES)
    folder = fixture.parent if rel.parts[0] == "crafted" else DATA / rel
    found = [p for p in folder.glob(stem + ".*") if p.suffix in (".pcap", ".pcapng", ".cap")]
    assert len(found) == 1, f"capture for {fixture}: {found}"
    return found[0]


def _key(capture: Path) -> str:
    """Capture path relative to tests/data without extension, as KNOWN_DIFFERENCES names it."""
    return str(capture.relative_to(DATA).with_suffix(""))


def _read_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="surrogateescape").splitlines()


def _listing(capture: Path, time_format: str, hex_ascii: bool, **open_kwargs) -> list[str]:
    state = ListingState()
    lines: list[str] = []
    with open_capture(str(capture), **open_kwargs) as cap:
        for chunk in cap.chunks():
            for text in format_packets(chunk.buf, chunk.table, time_format=time_format, hex_ascii=hex_ascii,
                                       state=state):
                lines.extend(text.split("\n"))
    return lines


@pytest.fixture
def utc_machine(monkeypatch):
    """Local time = UTC (the fixtures were made with TZ=UTC) and a fixed interface-index table."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr(listing_link, "interface_name", lambda index: MACHINE_INTERFACES.get(index, "?"))
    yield
    monkeypatch.undo()
    time.tzset()


def _drop_second_dump(lines: list[str]) -> list[str]:
    """Remove the repeated hex dump that tcpdump -X prints right after its own dump of an undecoded frame."""
    kept: list[str] = []
    repeating = False
    for line in lines:
        if line.startswith("\t0x0000:") and kept and kept[-1].startswith("\t0x"):
            repeating = True
        elif not line.startswith("\t0x"):
            repeating = False
        if not repeating:
            kept.append(line)
    return kept


FIXTURE_FILES = _fixture_files()


def test_fixtures_cover_every_lab_capture():
    lab = {p.stem for p in (DATA / "lab").glob("*.pcap")}
    stored = {_split_name(f)[0] for f in (FIXTURES / "lab").glob("*.default.txt*")}
    assert lab and lab == stored


@pytest.mark.parametrize("fixture", FIXTURE_FILES, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_listing_equals_tcpdump(fixture: Path, utc_machine):
    capture = _capture_of(fixture)
    _, variant = _split_name(fixture)
    key = _key(capture)
    expected = _read_lines(fixture)
    if variant == "X" and key in DOUBLE_DUMP:
        expected = _drop_second_dump(expected)
    ours = _listing(capture, TIME_FORMAT_OF_VARIANT[variant], variant == "X")

    allowed = [(theirs, mine) for cap, theirs, mine, _why in KNOWN_DIFFERENCES if cap == key]
    used = set()
    unexplained = []
    for number, (want, got) in enumerate(zip(expected, ours), 1):
        if want == got:
            continue
        match = next((i for i, (theirs, mine) in enumerate(allowed) if theirs in want and mine in got), None)
        if match is None:
            unexplained.append(f"line {number}\n  tcpdump: {want}\n  ours:    {got}")
        else:
            used.add(match)
    assert not unexplained, f"{len(unexplained)} lines differ from tcpdump:\n" + "\n".join(unexplained[:8])
    assert len(ours) == len(expected), f"{len(ours)} lines, tcpdump printed {len(expected)}"
    assert used == set(range(len(allowed))), "a documented difference no longer occurs: update KNOWN_DIFFERENCES"
    if key.startswith("lab/"):
        assert not allowed  # the lab captures must match tcpdump exactly


def test_state_carries_across_chunks(utc_machine):
    """Relative sequence numbers and delta times continue from one chunk to the next."""
    capture = DATA / "lab" / "healthy_bulk_rtt50.pcap"
    for variant, fmt in (("default", "local"),):
        fixture = next(FIXTURES.glob(f"lab/healthy_bulk_rtt50.{variant}.txt*"))
        ours = _listing(capture, fmt, False, chunk_bytes=64 * 1024, max_rows=97)
        assert ours == _read_lines(fixture)
    small = DATA / "lab" / "http_404_and_500.pcap"
    for variant in ("ttt", "ttttt"):
        ours = _listing(small, TIME_FORMAT_OF_VARIANT[variant], False, chunk_bytes=4096, max_rows=3)
        assert ours == _read_lines(FIXTURES / "lab" / f"http_404_and_500.{variant}.txt")


def test_relative_time_counts_from_first_ts(utc_machine):
    capture = DATA / "lab" / "syn_drop.pcap"
    with open_capture(str(capture)) as cap:
        chunk = next(cap.chunks())
        first = int(chunk.table["ts"][0])
        # listing only the packets from the third on, relative to the capture's first packet
        tail = list(format_packets(chunk.buf, chunk.table[2:], time_format="relative", first_ts=first))
        whole = list(format_packets(chunk.buf, chunk.table, time_format="relative"))
        earlier = list(format_packets(chunk.buf, chunk.table[:1], time_format="relative",
                                      first_ts=first - 1_500_000_000))
    assert tail == whole[2:]
    assert earlier[0].startswith(" 00:00:01.500000 IP ")


def test_utc_ignores_the_time_zone(monkeypatch):
    capture = DATA / "lab" / "dns_nxdomain.pcap"
    expected = _read_lines(FIXTURES / "lab" / "dns_nxdomain.default.txt")
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        assert _listing(capture, "utc", False) == expected
        local = _listing(capture, "local", False)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert [line[16:] for line in local] == [line[16:] for line in expected]
    assert [line[:15] for line in local] != [line[:15] for line in expected]  # +05:30


def test_unknown_time_format_is_refused():
    table = new_table(0)
    with pytest.raises(ValueError, match="time_format"):
        list(format_packets(np.zeros(0, np.uint8), table, time_format="tai"))
    assert set(TIME_FORMATS) == {"local", "utc", "date", "epoch", "relative", "delta"}


def test_frames_without_decoder_columns():
    """Only the frame columns are needed: a table straight from a reader lists without the decoder."""
    frame = bytes.fromhex("66778899aabb001122334455 0800 45000028000100004006f9c80a0000010a000002"
                          "03e807d0000000050000000750122000917c0000".replace(" ", ""))
    table = new_table(1)
    table["ts"] = 1_000_000_123_456  # ns: shown as microseconds, truncated
    table["caplen"] = table["wirelen"] = len(frame)
    table["linktype"] = 1
    table["data"] = 0
    buf = np.frombuffer(frame, np.uint8)
    (line,) = format_packets(buf, table, time_format="epoch")
    assert line == "1000.000123 IP 10.0.0.1.1000 > 10.0.0.2.2000: Flags [S.], seq 5, ack 7, win 8192, length 0"
