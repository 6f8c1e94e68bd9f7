"""The field reference, generated from the registry (what `-Y`, playbook rules and reports can name)."""

from __future__ import annotations

from diagnose.fields.registry import all_fields


def reference_rows() -> list[dict[str, str]]:
    """One row per field: name, type, protocol, description (sorted by name)."""
    return [{"name": f.name, "type": str(f.type), "protocol": f.protocol, "description": f.description}
            for f in all_fields()]


def reference_markdown() -> str:
    """The reference as a Markdown table."""
    lines = ["| field | type | description |", "|---|---|---|"]
    for row in reference_rows():
        description = row["description"].replace("|", "\\|")
        lines.append(f"| `{row['name']}` | {row['type']} | {description} |")
    return "\n".join(lines) + "\n"
