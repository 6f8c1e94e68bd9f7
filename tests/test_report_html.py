"""The HTML report in a real browser: headless Chromium (Debian package `chromium`) renders the reports of
idle_timeout_rst and retransmissions, and the charts (inline SVG: connection ladder, retransmissions over time)
are drawn — the screenshot, with everything but the charts hidden, is not blank and holds each chart's colours."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib

import numpy as np
from numba import njit

from diagnose.rules.run import run_diagnosis
from oracles.fixtures import data_path

LAB = data_path("lab")
ONLY_CHARTS = ("<style>body * { visibility: hidden !important; } svg.chart, svg.chart * "
               "{ visibility: visible !important; }</style>")
RED_BARS = (198, 40, 40)  # .chart .retr  #c62828
EVIDENCE_RED = (176, 0, 32)  # evidence arrows and labels  #b00020


@njit(cache=True)
def _unfilter(raw, height, stride, bpp):
    out = np.zeros((height, stride), np.uint8)
    pos = 0
    for y in range(height):
        kind = raw[pos]
        pos += 1
        for x in range(stride):
            f = np.int32(raw[pos + x])
            a = np.int32(out[y, x - bpp]) if x >= bpp else 0
            b = np.int32(out[y - 1, x]) if y > 0 else 0
            c = np.int32(out[y - 1, x - bpp]) if (y > 0 and x >= bpp) else 0
            if kind == 1:
                f += a
            elif kind == 2:
                f += b
            elif kind == 3:
                f += (a + b) // 2
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                f += a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
            out[y, x] = f & 0xFF
        pos += stride
    return out


def read_png(path) -> np.ndarray:
    """RGB(A) 8-bit, non-interlaced PNG -> (height, width, channels) array (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8: pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and interlace == 0 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8)
    return _unfilter(raw, height, width * channels, channels).reshape(height, width, channels)


def screenshot(html_path, png_path, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser and not os.environ.get("CI"):
        # a developer machine without a browser; CI installs Debian's chromium (.ci/run), so there this never skips
        pytest.skip("headless Chromium not installed (apt-get install chromium)")
    assert browser, "CI must have headless Chromium: .ci/run installs Debian's chromium"
    subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,2400",
                    f"--screenshot={png_path}", html_path.as_uri()], check=True, capture_output=True, timeout=120)
    return read_png(png_path)


def charts_only(tmp_path, capture: str, charts: int):
    html = tmp_path / f"{capture}.html"
    run_diagnosis(str(LAB / f"{capture}.pcap"), ["all"], None, "html", str(html), "never")
    page = html.read_text()
    assert page.count('<svg class="chart') == charts
    html.write_text(page.replace("</head>", ONLY_CHARTS + "</head>"))
    return screenshot(html, tmp_path / f"{capture}.png", tmp_path)


def _near(img: np.ndarray, rgb, tolerance: int = 12) -> int:
    diff = np.abs(img[:, :, :3].astype(np.int32) - np.array(rgb, np.int32))
    return int((diff.max(axis=2) <= tolerance).sum())


def _drawn_rows(img: np.ndarray) -> int:
    ink = img[:, :, :3].min(axis=2) < 200  # not the white/near-white page or chart background
    return int(ink.any(axis=1).sum())


def test_retransmissions_charts_render(tmp_path):
    img = charts_only(tmp_path, "retransmissions", 2)  # retransmissions over time + the ladder
    assert _drawn_rows(img) > 300, "the ladder and the retransmission chart should fill hundreds of pixel rows"
    assert _near(img, RED_BARS) > 200, "red retransmission bars missing"
    assert _near(img, EVIDENCE_RED) > 100, "evidence arrows missing from the ladder"


def test_idle_timeout_ladder_renders(tmp_path):
    img = charts_only(tmp_path, "idle_timeout_rst", 1)  # the ladder with the 9 s silence
    assert _drawn_rows(img) > 150
    assert _near(img, EVIDENCE_RED) > 50, "the RST and the request after the idle gap are highlighted"


def test_hidden_charts_leave_a_blank_page(tmp_path):
    """The control: with the charts hidden too, the same screenshot is blank — so the ink above is the charts."""
    html = tmp_path / "blank.html"
    run_diagnosis(str(LAB / "retransmissions.pcap"), ["all"], None, "html", str(html), "never")
    html.write_text(html.read_text().replace("</head>", "<style>* { visibility: hidden !important; }</style></head>"))
    img = screenshot(html, tmp_path / "blank.png", tmp_path)
    assert _drawn_rows(img) == 0
