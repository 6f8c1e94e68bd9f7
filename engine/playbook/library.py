"""Which playbooks run: built-in names and user files, includes expanded, checked together, parameters set.

    rules = load_rule_set(["tcp", "./my.yaml"], overrides=["tcp.retransmission-rate.threshold=0.5%"])

Every playbook is loaded and every mistake (in any file, including rule ids defined twice across files and
`explains`/`expect` naming rules that do not exist) is collected into one PlaybookError before any packet is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from diagnose.errors import UsageError
from diagnose.playbook.loader import _load
from diagnose.playbook.model import Param, Playbook, Reference, Rule
from diagnose.playbook.problems import PlaybookError, Problem
from diagnose.playbook.values import ValueError_, parse_value
from diagnose.resources import data_dir


def builtin_dir() -> Path:
    return data_dir("playbooks")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def lab_dirs() -> list[Path]:
    """Where self-test captures named `lab/NAME.pcap` are looked for: $DIAGNOSE_LAB_DIR, then the source tree's
    tests/data (absent in an installed wheel: built-in self-tests then say the capture is missing)."""
    dirs = []
    if os.environ.get("DIAGNOSE_LAB_DIR"):
        dirs.append(Path(os.environ["DIAGNOSE_LAB_DIR"]))
    package = Path(__file__).resolve().parent.parent
    for root in (package.parent / "tests" / "data", package / "tests" / "data"):
        if root.is_dir():
            dirs.append(root)
    return dirs


def resolve_capture(playbook_path: Path, name: str) -> Path | None:
    """A self-test capture: relative to the playbook file, else under the lab folders (`lab/syn_drop.pcap`)."""
    candidate = playbook_path.parent / name
    if candidate.is_file():
        return candidate.resolve()
    for folder in lab_dirs():
        option = folder / name
        if option.is_file():
            return option.resolve()
    return None


def find_playbook(spec: str) -> tuple[Path, bool]:
    """A built-in name or a file path -> (path, builtin)."""
    if spec.endswith((".yaml", ".yml")) or os.sep in spec or "/" in spec:
        return Path(spec), False
    path = builtin_dir() / f"{spec}.yaml"
    if path.is_file():
        return path, True
    known = ", ".join(builtin_names())
    raise UsageError(f"unknown playbook '{spec}' (built-in: {known}; or give a .yaml file)")


@dataclass
class RuleSet:
    """The rules of one run, in playbook order, with their parameters and the playbooks they came from."""

    playbooks: list[Playbook]
    rules: list[Rule]
    params: dict[str, list[Param]] = field(default_factory=dict)  # qualified name -> the Param objects it sets

    def rule(self, rule_id: str) -> Rule | None:
        return next((r for r in self.rules if r.id == rule_id), None)

    def set_params(self, overrides: list[str] | dict[str, str]) -> None:
        """Apply --set NAME=VALUE (RULE_ID.NAME, PLAYBOOK.NAME, or a bare NAME for every parameter so named)."""
        items = overrides.items() if isinstance(overrides, dict) else (_split_set(o) for o in overrides)
        for name, raw in items:
            targets = self.params.get(name)
            if targets is None:
                targets = [p for ps in self.params.values() for p in ps if p.name == name]
            if not targets:
                known = ", ".join(sorted(self.params)) or "none"
                import difflib
                close = difflib.get_close_matches(name, list(self.params), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {known})"
                raise UsageError(f"--set {name}: no such parameter{hint}")
            for param in targets:
                try:
                    param.value = parse_value(raw, kind=param.default.kind)
                except ValueError_ as exc:
                    raise UsageError(f"--set {name}={raw}: {exc}") from None

    def reset_params(self) -> None:
        for ps in self.params.values():
            for p in ps:
                p.value = p.default


def _split_set(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise UsageError(f"--set {text}: expected NAME=VALUE")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def load_rule_set(specs: list[str] | None = None, overrides: list[str] | dict[str, str] | None = None, *,
                  cache: bool = True) -> RuleSet:
    """Load the named playbooks (default: all), expand includes, check everything together, apply --set.

    With `cache`, a rule set loaded before from the same playbook files (and the same tool) is read from the user's
    cache folder (playbook/cache.py); mistakes are never cached, so they are found and reported as without it."""
    specs = list(specs or ["all"])
    rule_set = None
    if cache:
        from diagnose.playbook import cache as saved

        rule_set = saved.load(specs)
    if rule_set is None:
        rule_set, files = _load_checked(specs)
        if cache:
            saved.save(specs, rule_set, files)
    if overrides:
        rule_set.set_params(overrides)
    return rule_set


def _load_checked(specs: list[str]) -> tuple[RuleSet, list[Path]]:
    """The rule set of the specs (parameters at their defaults) and the playbook files it was read from; every
    mistake at once as a PlaybookError."""
    problems: list[Problem] = []
    loaded: dict[Path, Playbook] = {}
    order: list[Playbook] = []

    def visit(spec: str, via: Reference | None, stack: tuple[Path, ...]) -> None:
        try:
            path, builtin = find_playbook(spec)
        except UsageError as exc:
            if via is None:
                raise
            problems.append(Problem(via.path, via.line, via.col, exc.message, via.source_line))
            return
        key = path.resolve()
        if key in stack:
            if via is not None:
                problems.append(Problem(via.path, via.line, via.col, f"playbook '{spec}' includes itself",
                                        via.source_line))
            return
        if key in loaded:
            return
        shown = f"playbooks/{path.name}" if builtin else str(path)
        playbook, found = _load(path, builtin=builtin, shown=shown)
        problems.extend(found)
        if playbook is None:
            return
        loaded[key] = playbook
        for name in playbook.include:
            visit(name, playbook.include_where.get(name), stack + (key,))
        order.append(playbook)

    for spec in specs:
        visit(spec, None, ())

    rules: list[Rule] = []
    first_seen: dict[str, Rule] = {}
    for playbook in order:
        for rule in playbook.rules:
            if rule.id in first_seen:
                where = rule.where
                other = first_seen[rule.id].where
                problems.append(Problem(where.path, where.line, where.col,
                                        f"rule id '{rule.id}' is already defined at {other}", ""))
                continue
            first_seen[rule.id] = rule
            rules.append(rule)
    builtin_ids = None
    for playbook in order:
        reachable = _reachable_ids(playbook, loaded)
        for ref in playbook.references:
            pool = first_seen if ref.kind == "explains" else reachable
            if ref.target not in pool and ref.kind == "explains":
                # a rule of a built-in playbook that is not loaded in this run: nothing to explain here, no mistake
                builtin_ids = _builtin_rule_ids() if builtin_ids is None else builtin_ids
                if ref.target in builtin_ids:
                    continue
            if ref.target not in pool:
                import difflib
                close = difflib.get_close_matches(ref.target, list(pool), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                what = {"explains": "explains", "expect": "a self-test expects",
                        "messages": "a self-test checks the message of"}[ref.kind]
                problems.append(Problem(ref.path, ref.line, ref.col,
                                        f"{what} rule '{ref.target}', which is not defined{hint}", ref.source_line))
    if problems:
        raise PlaybookError(problems)
    rule_set = RuleSet(order, rules)
    for rule in rules:
        for param in rule.params.values():
            bucket = rule_set.params.setdefault(param.qualified, [])
            if all(p is not param for p in bucket):
                bucket.append(param)
    files = list(loaded)
    if builtin_ids is not None:  # the answer read every built-in playbook
        files += [path.resolve() for path in sorted(builtin_dir().glob("*.yaml")) if path.resolve() not in loaded]
    return rule_set, files


def _builtin_rule_ids() -> set[str]:
    """Rule ids of every built-in playbook, read without compiling them (for `explains` across playbooks)."""
    import yaml

    ids: set[str] = set()
    for path in builtin_dir().glob("*.yaml"):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        for rule in data.get("rules") or []:
            if isinstance(rule, dict) and isinstance(rule.get("id"), str):
                ids.add(rule["id"])
    return ids


def _reachable_ids(playbook: Playbook, loaded: dict[Path, Playbook]) -> dict[str, Rule]:
    """Rule ids of a playbook and of everything it includes (what its self-tests may expect)."""
    out: dict[str, Rule] = {}
    stack = [playbook]
    seen: set[int] = set()
    by_name = {p.name: p for p in loaded.values()}
    while stack:
        p = stack.pop()
        if id(p) in seen:
            continue
        seen.add(id(p))
        out.update({r.id: r for r in p.rules})
        stack.extend(by_name[n] for n in p.include if n in by_name)
    return out
