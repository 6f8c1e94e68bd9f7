"""The wheel, installed into a fresh virtual environment, runs: package data and entry point included."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_runs(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(ROOT)], check=True,
                   capture_output=True)
    (wheel,) = dist.glob("diagnose-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "diagnose/cli.py" in names and "diagnose/capture/reader.py" in names
    assert any(n.startswith("diagnose/grammar/") for n in names)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True)
    out = subprocess.run([str(env_dir / "bin" / "diagnose"), "--version"], check=True, capture_output=True, text=True)
    from diagnose import __version__

    assert out.stdout.strip() == f"diagnose {__version__}"
