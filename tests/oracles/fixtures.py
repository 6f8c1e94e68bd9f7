"""Read the stored tshark/capinfos oracle fixtures (made by make_fixtures.py) and the test data beside them.

Tests compare the product against these files instead of running tshark. Layout and keys:
tests/data/fixtures/README.md.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from pathlib import Path

DATA_ROOT = Path(__file__).resolve().parents[1] / "data"
TSHARK_FIXTURES = DATA_ROOT / "fixtures" / "tshark"
CAPTURE_GROUPS = ("lab", "corpus", "corpus-zeek")
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".gz")


def data_path(*parts: str) -> Path:
    """A path under tests/data, e.g. data_path("lab", "syn_drop.pcap")."""
    return DATA_ROOT.joinpath(*parts)


def capture_files() -> list[tuple[str, str]]:
    """(group, path relative to the group folder) of every capture under tests/data/{lab,corpus,corpus-zeek}."""
    found = []
    for group in CAPTURE_GROUPS:
        root = DATA_ROOT / group
        for path in sorted(root.rglob("*")):
            if path.is_file() and path.name.endswith(CAPTURE_SUFFIXES):
                found.append((group, path.relative_to(root).as_posix()))
    return found


def tshark_fixture_path(group: str, name: str) -> Path:
    """The fixture file of capture <group>/<name>: .json, or .json.gz for the large ones."""
    plain = TSHARK_FIXTURES / group / f"{name}.json"
    zipped = TSHARK_FIXTURES / group / f"{name}.json.gz"
    if plain.exists():
        return plain
    if zipped.exists():
        return zipped
    raise FileNotFoundError(f"no tshark fixture for {group}/{name}; run tests/oracles/make_fixtures.py")


@lru_cache(maxsize=64)
def load_tshark(group: str, name: str) -> dict:
    """The tshark fixture of capture <group>/<name> (e.g. "lab", "syn_drop.pcap"). Cached: do not mutate it."""
    path = tshark_fixture_path(group, name)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return json.loads(raw)


def packet_columns(fixture: dict) -> dict[str, list[str]]:
    """{field: one string per frame} from a fixture or its fixture["keys"]["with_keys"] part.

    Cells read like `tshark -T fields -E occurrence=a -E aggregator=,` output ("" = field absent)."""
    table = fixture["packets"]
    columns: dict[str, list[str]] = {field: [] for field in table["fields"]}
    for row in table["rows"]:
        for field, cell in zip(table["fields"], row):
            columns[field].append(cell)
    return columns


def field_occurrences(fixture: dict, field: str) -> list[list[str]]:
    """Every occurrence of `field` per frame, split exactly even when a value itself contains a comma."""
    table = fixture["packets"]
    exact = table.get("comma_values", {}).get(field, {})
    index = table["fields"].index(field)
    frame_index = table["fields"].index("frame.number")
    result = []
    for row in table["rows"]:
        frame = row[frame_index]
        if frame in exact:
            result.append(list(exact[frame]))
        else:
            result.append(row[index].split(",") if row[index] else [])
    return result
