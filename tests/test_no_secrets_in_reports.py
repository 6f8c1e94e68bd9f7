"""No key-log secret reaches any output: the diagnosis in every report format, the key match summary, the flow
records, the listing and the capture facts, run with the lab key logs (issue 7)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from oracles.fixtures import data_path
from keylog_secrets import secret_pieces

CAPTURES = ["tls_decrypt_keylog", "slow_ttfb_tls", "tls_expired_cert", "tls_wrong_host"]


def leaked(text: str, secrets: list[str]) -> list[str]:
    low = text.lower()
    return [s for s in secrets if s in low or s.upper() in text]


def run(*args, tmp_out=None):
    done = subprocess.run([sys.executable, "-m", "diagnose", *map(str, args)], capture_output=True, text=True)
    assert "Traceback" not in done.stderr, done.stderr
    text = done.stdout + done.stderr
    if tmp_out is not None and tmp_out.exists():
        text += tmp_out.read_text(errors="replace")
    return done, text


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("fmt", ["text", "markdown", "html", "json", "ndjson", "junit"])
def test_diagnosis_reports_hold_no_secret(tmp_path, name, fmt):
    keys = data_path("lab", f"{name}.keys")
    secrets = secret_pieces(keys)
    assert secrets
    out = tmp_path / f"report.{fmt}"
    done, text = run(data_path("lab", f"{name}.pcap"), "--keylog", keys, "--format", fmt, "-o", out, tmp_out=out)
    assert done.returncode in (0, 1), done.stderr
    assert out.exists() and out.stat().st_size > 0
    assert not leaked(text, secrets)


@pytest.mark.parametrize("name", CAPTURES)
def test_other_commands_hold_no_secret(tmp_path, name):
    keys = data_path("lab", f"{name}.keys")
    capture = data_path("lab", f"{name}.pcap")
    secrets = secret_pieces(keys)
    for args in (["keys", capture, "--keylog", keys], ["keys", capture, "--keylog", keys, "--json"],
                 ["list", capture, "-X", "--keylog", keys, "-Y", "tls"], ["flows", "--json", capture],
                 ["info", "--json", capture]):
        _done, text = run(*args)
        assert not leaked(text, secrets), args


def test_the_check_itself_finds_a_leak():
    keys = data_path("lab", "tls_decrypt_keylog.keys")
    secrets = secret_pieces(keys)
    line = next(line for line in keys.read_text().splitlines() if re.match(r"^[A-Z_0-9]+ ", line))
    assert leaked(f"oops: {line}", secrets)
