"""Playbooks: YAML rules a network engineer can read, extend and test (format: docs/playbooks.md).

    from diagnose.playbook import load_rule_set
    rules = load_rule_set(["tcp", "my.yaml"], overrides=["tcp.rst-after-idle.min_idle=5s"])
"""

from diagnose.playbook.library import RuleSet, builtin_names, find_playbook, lab_dirs, load_rule_set, resolve_capture
from diagnose.playbook.loader import load_playbook_file
from diagnose.playbook.model import Aggregate, Explains, Filter, GroupSpec, Param, Playbook, Rule, SelfTest
from diagnose.playbook.problems import PlaybookError, Problem

__all__ = ["Aggregate", "Explains", "Filter", "GroupSpec", "Param", "Playbook", "PlaybookError", "Problem", "Rule",
           "RuleSet", "SelfTest", "builtin_names", "find_playbook", "lab_dirs", "load_playbook_file",
           "load_rule_set", "resolve_capture"]
