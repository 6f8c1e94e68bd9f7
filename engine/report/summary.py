"""What `diagnose CAPTURE` prints: the capture at a glance, its artefacts and its conversations.

Playbook findings are appended here by the rule engine; until a playbook fires, the overview is the report.
"""

from __future__ import annotations

from diagnose.report.flows import format_flows
from diagnose.report.info import collect_info, format_info


def capture_summary(path: str, *, playbooks: list[str]) -> str:
    info = collect_info(path, with_flows=True)
    text = format_info(info) + "\nConversations:\n" + format_flows(info["flows"])
    for w in info["warnings"]:
        text += f"warning: {w}\n"
    return text
