"""Inline SVG charts for the HTML report: connection ladder, retransmissions over time, latency phase bars.

Plain SVG strings (no script, no external resource) so the page stays self-contained; every text element is
XML-escaped here, because labels carry packet-derived strings.
"""

from __future__ import annotations

from html import escape

from markupsafe import Markup

from diagnose.report.chart_data import FlowChart
from diagnose.report.text_safety import clean

PHASE_COLORS = {"dns": "#6a9fb5", "connect": "#90a959", "tls": "#aa759f", "ttfb": "#d28445", "transfer": "#75b5aa"}
PHASE_NAMES = {"dns": "DNS", "connect": "TCP connect", "tls": "TLS handshake", "ttfb": "server TTFB",
               "transfer": "transfer"}


def _t(text) -> str:
    return escape(clean(str(text)), quote=True)


def _dur(seconds: float) -> str:
    a = abs(seconds)
    if a >= 1:
        return f"{seconds:.2f} s"
    if a >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def ladder(chart: FlowChart, width: int = 720) -> Markup:
    """Client and server as two vertical lines, one arrow per packet in time order; evidence packets highlighted,
    long silences and packets left out marked between arrows."""
    left, right = 150, width - 150
    row = 24
    items: list[str] = []
    y = 40
    prev_t = None
    prev_index = 0
    for p in chart.packets:
        if prev_index and p.index - prev_index > 1:
            items.append(f'<text x="{width / 2}" y="{y + 4}" class="gap">··· {p.index - prev_index - 1} packets not '
                         f'drawn ···</text>')
            y += row
        prev_index = p.index
        if prev_t is not None and p.t - prev_t >= 1.0:
            items.append(f'<text x="{width / 2}" y="{y + 4}" class="gap">··· {_t(_dur(p.t - prev_t))} silence ···</text>')
            y += row
        prev_t = p.t
        x1, x2 = (left, right) if p.from_client else (right, left)
        cls = "pkt ev" if p.evidence else ("pkt bad" if p.notes else "pkt")
        y2 = y + 8
        items.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y2}" class="{cls}" marker-end="url(#arrow)"/>')
        label = p.label + (f" [{', '.join(p.notes)}]" if p.notes else "")
        items.append(f'<text x="{(left + right) / 2}" y="{y - 3}" class="lbl{" evl" if p.evidence else ""}">'
                     f'{_t(label)}</text>')
        items.append(f'<text x="6" y="{y + 6}" class="meta">#{p.frame}  {_t(_dur(p.t))}</text>')
        y += row
    height = y + 10
    head = (f'<text x="{left}" y="18" class="end">{_t(chart.client)}</text>'
            f'<text x="{right}" y="18" class="end">{_t(chart.server)}</text>'
            f'<line x1="{left}" y1="26" x2="{left}" y2="{height - 6}" class="axis"/>'
            f'<line x1="{right}" y1="26" x2="{right}" y2="{height - 6}" class="axis"/>')
    defs = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>')
    return Markup(f'<svg class="chart ladder" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" role="img" aria-label="connection ladder">{defs}{head}'
                  f'{"".join(items)}</svg>')


def retransmissions(chart: FlowChart, width: int = 720, height: int = 180) -> Markup | None:
    """Data segments (grey) and retransmissions (red) per time bin of the flow."""
    if not chart.data_bins or not any(chart.retrans_bins):
        return None
    pad_l, pad_b, pad_t = 50, 28, 16
    n = len(chart.data_bins)
    top = max(max(chart.data_bins), max(chart.retrans_bins), 1)
    bw = (width - pad_l - 10) / n
    plot_h = height - pad_b - pad_t
    bars = []
    for k, (d, r) in enumerate(zip(chart.data_bins, chart.retrans_bins)):
        x = pad_l + k * bw
        hd = plot_h * d / top
        hr = plot_h * r / top
        bars.append(f'<rect x="{x:.1f}" y="{pad_t + plot_h - hd:.1f}" width="{max(bw - 1, 1):.1f}" height="{hd:.1f}" '
                    f'class="data"/>')
        if r:
            bars.append(f'<rect x="{x:.1f}" y="{pad_t + plot_h - hr:.1f}" width="{max(bw - 1, 1):.1f}" '
                        f'height="{max(hr, 1.5):.1f}" class="retr"><title>{r} retransmissions</title></rect>')
    span = chart.bin_width * n
    axis = (f'<line x1="{pad_l}" y1="{pad_t + plot_h}" x2="{width - 10}" y2="{pad_t + plot_h}" class="axis"/>'
            f'<text x="{pad_l}" y="{height - 8}" class="meta">0</text>'
            f'<text x="{width - 10}" y="{height - 8}" class="meta" text-anchor="end">{_t(_dur(span))}</text>'
            f'<text x="{pad_l - 6}" y="{pad_t + 8}" class="meta" text-anchor="end">{top}</text>'
            f'<text x="{pad_l + 8}" y="{pad_t - 3}" class="meta">segments per {_t(_dur(chart.bin_width))}: '
            f'data (grey), retransmitted (red): {sum(chart.retrans_bins)} of {sum(chart.data_bins)}</text>')
    return Markup(f'<svg class="chart retrans" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" role="img" aria-label="retransmissions over time">'
                  f'{axis}{"".join(bars)}</svg>')


def phases(values: dict[str, float | None], width: int = 720, height: int = 70) -> Markup | None:
    """One stacked bar of the latency phases of a transaction, the dominant phase named."""
    items = [(k, float(v)) for k, v in values.items() if v is not None and k in PHASE_COLORS and float(v) > 0]
    if not items:
        return None
    total = sum(v for _, v in items)
    dominant = max(items, key=lambda kv: kv[1])[0]
    x = 10.0
    scale = (width - 20) / total
    parts = []
    legend = []
    lx = 10
    for k, v in items:
        w = max(v * scale, 1.0)
        stroke = ' stroke="#000" stroke-width="1.5"' if k == dominant else ""
        parts.append(f'<rect x="{x:.1f}" y="10" width="{w:.1f}" height="22" fill="{PHASE_COLORS[k]}"{stroke}>'
                     f'<title>{_t(PHASE_NAMES[k])}: {_t(_dur(v))}</title></rect>')
        x += w
        legend.append(f'<rect x="{lx}" y="44" width="10" height="10" fill="{PHASE_COLORS[k]}"/>'
                      f'<text x="{lx + 14}" y="53" class="meta">{_t(PHASE_NAMES[k])} {_t(_dur(v))}</text>')
        lx += 150
    return Markup(f'<svg class="chart phases" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
                  f'viewBox="0 0 {width} {height}" role="img" aria-label="latency phases">{"".join(parts)}'
                  f'{"".join(legend)}</svg>')
