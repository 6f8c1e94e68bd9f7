"""Parse a Wireshark display filter (the lark grammar and transformer live in display_tree, imported on first use:
a rule set read from the playbook cache is compiled from saved trees and never parses)."""

from __future__ import annotations

LANGUAGE = "display filter"
GRAMMAR_FILE = "display_filter.lark"


def parse_display_filter(text: str):
    from diagnose.filters.display_tree import parse_display_filter as parse

    return parse(text)
