"""The secrets of an NSS key log as the no-leak tests look for them."""

from __future__ import annotations

from pathlib import Path


def secret_pieces(keylog: Path) -> list[str]:
    """Every secret of an NSS key log (its third field) as 16-hex-digit pieces, overlapping: a partial leak counts."""
    out = []
    for line in Path(keylog).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and not line.startswith("#"):
            secret = parts[2].lower()
            out += [secret[i: i + 16] for i in range(0, len(secret) - 15, 8)]
    return out
