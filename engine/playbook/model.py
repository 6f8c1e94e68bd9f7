"""What a loaded playbook is: rules with compiled filters and templates, parameters, self-tests.

Everything here was checked by the loader; the rule engine (diagnose.rules) only runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnose.playbook.values import Value


@dataclass(frozen=True)
class Where:
    path: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Reference:
    """A rule id written somewhere (explains, a self-test's expect): checked once every playbook is loaded."""

    target: str
    kind: str  # "explains" | "expect" | "messages"
    path: str
    line: int
    col: int
    source_line: str


@dataclass
class Filter:
    text: str
    scope: str  # where it is evaluated: packet | flow | capture | group
    compiled: Any  # expressions.Compiled
    where: Where

    def evaluate(self, ctx):
        return self.compiled.evaluate(ctx)


@dataclass
class Aggregate:
    name: str
    function: str
    text: str
    filters: list[Filter]  # the filter arguments, in order (percent: F, OF)
    field: str | None = None  # the value argument (distinct, sum, ...)
    window_ns: int | None = None  # peak()
    result_type: str = "uint"  # FieldType value of agg.NAME


@dataclass
class Param:
    qualified: str  # RULE_ID.NAME or PLAYBOOK.NAME: what --set names
    name: str  # what filters read as param.NAME
    default: Value
    value: Value
    description: str = ""


@dataclass
class GroupSpec:
    by: list[str]
    near: str | None
    tolerance: Value | None
    min_flows: int
    message: Any  # jinja Template
    message_text: str = ""


@dataclass
class Explains:
    rules: list[str]
    match: str = "flow"
    action: str = "attach"
    where: Where | None = None


@dataclass
class Rule:
    id: str
    title: str
    severity: str
    scope: str
    when: Filter
    message: Any  # jinja Template
    message_text: str
    playbook: str
    where: Where
    evidence: Filter | None = None
    evidence_limit: int = 20
    evidence_frames: str | None = None  # a flow fact holding frame numbers (flow.NAME)
    aggregates: dict[str, Aggregate] = field(default_factory=dict)
    group_by: list[str] | None = None
    having: Filter | None = None
    params: dict[str, Param] = field(default_factory=dict)  # short name -> param (rule's own and playbook's)
    group: GroupSpec | None = None
    explains: Explains | None = None
    explanation: Any = None
    explanation_text: str = ""
    advice: Any = None
    advice_text: str = ""
    references: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    names: Any = None  # expressions.ExtraNames: the param.*/agg.* names its filters read (for `explain`)

    @property
    def severity_rank(self) -> int:
        return {"info": 0, "warning": 1, "error": 2}[self.severity]


@dataclass
class SelfTest:
    capture: str  # as written; resolved when the test runs
    expect: list[str]
    where: Where
    params: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    reason: str = ""
    keylog: str | None = None
    ca_file: str | None = None


@dataclass
class Playbook:
    name: str
    title: str
    path: Path
    description: str = ""
    rules: list[Rule] = field(default_factory=list)
    tests: list[SelfTest] = field(default_factory=list)
    params: dict[str, Param] = field(default_factory=dict)  # playbook-wide
    include: list[str] = field(default_factory=list)
    builtin: bool = False
    references: list[Reference] = field(default_factory=list)
    include_where: dict[str, Reference] = field(default_factory=dict)
