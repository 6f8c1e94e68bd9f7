"""The HTML report (reports/report.html.j2): one self-contained page with inline SVG charts per finding: the
connection ladder of each flagged flow, its retransmissions over time, and the latency phases of a transaction."""

from __future__ import annotations

from diagnose.findings import SCHEMA_VERSION, Finding, Report
from diagnose.report import svg
from diagnose.report.chart_data import ChartData
from diagnose.report.templating import report_environment


def render_html(report: Report, charts: ChartData | None = None) -> str:
    drawn: set[int] = set()

    def charts_for(f: Finding) -> list:
        out = []
        phases = f.values.get("phases") if isinstance(f.values, dict) else None
        if isinstance(phases, dict):
            bar = svg.phases(phases)
            if bar is not None:
                out.append(bar)
        if charts is None:
            return out
        for ref in f.flows[:3]:
            chart = charts.flows.get(ref.conv)
            if chart is None or not chart.packets:
                continue
            if "retrans" in f.rule_id or "loss" in f.rule_id:
                series = svg.retransmissions(chart)
                if series is not None:
                    out.append(series)
            if ref.conv not in drawn:  # one ladder per flow, under the first finding about it
                drawn.add(ref.conv)
                out.append(svg.ladder(chart))
        return out

    template = report_environment().get_template("report.html.j2")
    return template.render(report=report, charts=charts_for, schema_version=SCHEMA_VERSION)
