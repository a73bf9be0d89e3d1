"""Judging an observation against a monitor's thresholds.

A rule states what healthy looks like ("latency < 500 ms", "$.database equals
connected"), with a warning value and a critical value. The first value a
measurement breaks sets the outcome, and the reason says what was seen in one
sentence: `p95 latency 612 ms > 500 ms over 10 min`,
`$.database is "disconnected", expected "connected"`,
`certificate expires in 5 days (critical < 7)`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError

from checks.models import Assertion, Outcome
from checks.probes.base import Observation

Source = Assertion.Source
Op = Assertion.Operator
Agg = Assertion.Aggregate

ORDERED = {Op.LT, Op.LE, Op.GT, Op.GE}
# How a broken expectation reads: "latency < 500" broken reads "latency 612 ms > 500 ms".
BROKEN = {Op.LT: "≥", Op.LE: ">", Op.GT: "≤", Op.GE: "<"}
RANK = {Outcome.OK: 0, Outcome.WARNING: 1, Outcome.CRITICAL: 2, Outcome.ERROR: 3}
LABELS = {
    Source.STATUS_CODE: "HTTP status",
    Source.LATENCY: "latency",
    Source.BODY: "body",
    Source.CERT_DAYS: "certificate days left",
    Source.CONNECTION_PCT: "connections used",
    Source.MEMORY_PCT: "memory used",
    Source.CLIENTS: "connected clients",
    Source.QUERY_VALUE: "query value",
    Source.DNS_ANSWER: "DNS answers",
    Source.REPLY: "reply",
    Source.METRIC: "metric",
}
UNITS = {Source.LATENCY: " ms", Source.CONNECTION_PCT: "%", Source.MEMORY_PCT: "%"}


class Missing:
    """A value the observation does not have (an absent JSON key or header)."""

    def __repr__(self) -> str:
        return "missing"


MISSING = Missing()


# --- JSON paths -------------------------------------------------------------------

_PATH_TOKEN = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]|\[\"((?:[^\"\\]|\\.)*)\"\]|\['([^']*)'\]")


def parse_path(path: str) -> list[str | int]:
    """`$.services.database`, `$.items[0].name`, `$["odd key"]` → steps."""
    path = path.strip()
    if not path.startswith("$"):
        raise ValueError("a JSON path starts with $, e.g. $.status")
    steps: list[str | int] = []
    position = 1
    while position < len(path):
        match = _PATH_TOKEN.match(path, position)
        if match is None:
            raise ValueError(f"cannot read the JSON path at {path[position:]!r}")
        name, index, quoted, single = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            steps.append(name if name is not None else (quoted if quoted is not None else single))
        position = match.end()
    return steps


def resolve_path(document: Any, path: str) -> Any:
    value = document
    for step in parse_path(path):
        in_list = isinstance(step, int) and isinstance(value, list) and step < len(value)
        in_dict = isinstance(step, str) and isinstance(value, dict) and step in value
        if not (in_list or in_dict):
            return MISSING
        value = value[step]
    return value


# --- Rules ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    key: str
    source: str
    operator: str
    critical: str = ""
    warning: str = ""
    selector: str = ""
    aggregate: str = Agg.LAST
    window: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rule:
        return cls(
            key=str(data.get("key") or f"a{data['id']}"),
            source=data["source"],
            operator=data["operator"],
            critical=str(data.get("critical") or ""),
            warning=str(data.get("warning") or ""),
            selector=str(data.get("selector") or ""),
            aggregate=data.get("aggregate") or Agg.LAST,
            window=data.get("window"),
        )

    @property
    def windowed(self) -> bool:
        return self.aggregate != Agg.LAST and bool(self.window)

    @property
    def label(self) -> str:
        if self.source == Source.JSON_PATH:
            return self.selector
        if self.source == Source.HEADER:
            return f"header {self.selector}"
        if self.source == Source.METRIC and self.selector:
            return self.selector
        return LABELS.get(self.source, self.source)


@dataclass
class Verdict:
    outcome: str
    reason: str
    # Values of windowed rules, stored with the result to build the next windows.
    measured: dict[str, Any] = field(default_factory=dict)


History = Callable[[Rule, timedelta], Sequence[tuple[datetime, Any]]]


def evaluate(
    rules: Sequence[Rule], observation: Observation, now: datetime, history: History | None = None
) -> Verdict:
    if observation.error:
        return Verdict(Outcome.ERROR, observation.error)
    worst, reasons, measured = Outcome.OK, [], {}
    if observation.problems:
        worst, reasons = Outcome.CRITICAL, list(observation.problems)
    for rule in rules:
        value = extract(rule, observation)
        if rule.windowed and not isinstance(value, Missing):
            measured[rule.key] = value
        level, reason = judge(rule, value, now, history)
        if RANK[level] > RANK[worst]:
            worst, reasons = level, [reason]
        elif level == worst and level != Outcome.OK:
            reasons.append(reason)
    if worst == Outcome.OK:
        return Verdict(worst, observation.summary, measured)
    return Verdict(worst, "; ".join(reasons), measured)


def extract(rule: Rule, observation: Observation) -> Any:
    if rule.source == Source.LATENCY:
        return MISSING if observation.latency_ms is None else observation.latency_ms
    values = observation.values
    if rule.source == Source.JSON_PATH:
        if "json" not in values:
            return MISSING
        return resolve_path(values["json"], rule.selector)
    value = values.get(rule.source, MISSING)
    if rule.source == Source.HEADER and isinstance(value, dict):
        return value.get(rule.selector.lower(), MISSING)
    if rule.selector and isinstance(value, dict):
        return value.get(rule.selector, MISSING)
    return value


def judge(rule: Rule, value: Any, now: datetime, history: History | None) -> tuple[str, str]:
    if isinstance(value, Missing):
        if rule.source == Source.JSON_PATH and rule.operator == Op.NE:
            return Outcome.OK, ""
        return Outcome.CRITICAL, f"{rule.label} is missing"
    for level, threshold in ((Outcome.CRITICAL, rule.critical), (Outcome.WARNING, rule.warning)):
        if threshold == "":
            continue
        if rule.windowed and history is not None:
            broken, shown = judge_window(rule, value, threshold, now, history)
        else:
            broken, shown = not holds(rule.operator, value, threshold), value
        if broken:
            return level, describe(rule, shown, threshold, level)
    return Outcome.OK, ""


def judge_window(
    rule: Rule, value: Any, threshold: str, now: datetime, history: History
) -> tuple[bool, Any]:
    window = timedelta(seconds=rule.window or 0)
    samples = [(t, v) for t, v in history(rule, window) if t >= now - window] + [(now, value)]
    numbers = [to_number(v) for _, v in samples]
    if rule.aggregate == Agg.HELD:
        # Broken only if every sample in the window broke the expectation, and
        # the samples reach back (nearly) the whole window.
        oldest = min(t for t, _ in samples)
        covered = now - oldest >= window * 0.9
        return covered and all(not holds(rule.operator, v, threshold) for _, v in samples), value
    clean = sorted(n for n in numbers if n is not None)
    if not clean:
        return not holds(rule.operator, value, threshold), value
    if rule.aggregate == Agg.AVG:
        aggregate = sum(clean) / len(clean)
    elif rule.aggregate == Agg.MAX:
        aggregate = clean[-1]
    else:
        aggregate = percentile(clean, {Agg.P50: 50, Agg.P95: 95, Agg.P99: 99}[rule.aggregate])
    return not holds(rule.operator, aggregate, threshold), aggregate


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ordered list."""
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# --- Comparing ------------------------------------------------------------------------


def to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def parse_expected(text: str) -> Any:
    """A threshold as typed: JSON when it parses (true, 3, "x"), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_code_set(text: str) -> list[tuple[float, float]]:
    """`200-299, 301` → inclusive ranges."""
    ranges = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        ranges.append((float(low), float(high or low)))
    if not ranges:
        raise ValueError("empty list")
    return ranges


def holds(operator: str, value: Any, threshold: str) -> bool:
    if operator in ORDERED:
        number, limit = to_number(value), to_number(threshold)
        if number is None or limit is None:
            return False
        return {
            Op.LT: number < limit,
            Op.LE: number <= limit,
            Op.GT: number > limit,
            Op.GE: number >= limit,
        }[operator]
    if operator in (Op.EQ, Op.NE):
        equal = same(value, threshold)
        return equal if operator == Op.EQ else not equal
    if operator in (Op.CONTAINS, Op.NOT_CONTAINS):
        found = (
            any(same(item, threshold) for item in value)
            if isinstance(value, list)
            else threshold in as_text(value)
        )
        return found if operator == Op.CONTAINS else not found
    if operator == Op.MATCHES:
        return re.search(threshold, as_text(value)) is not None
    if operator == Op.IN:
        number = to_number(value)
        if number is not None and re.fullmatch(r"[\d.\s,-]+", threshold):
            return any(low <= number <= high for low, high in parse_code_set(threshold))
        return as_text(value) in [item.strip() for item in threshold.split(",")]
    raise ValueError(f"unknown operator {operator!r}")


def same(value: Any, threshold: str) -> bool:
    expected = parse_expected(threshold)
    if value == expected and type(value) is type(expected):
        return True
    number, limit = to_number(value), to_number(expected)
    if number is not None and limit is not None and not isinstance(value, str):
        return number == limit
    return as_text(value) == threshold


def as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


# --- Reasons ----------------------------------------------------------------------------


def show(rule: Rule, value: Any) -> str:
    if isinstance(value, float) and rule.source in UNITS:
        value = round(value) if abs(value) >= 10 else round(value, 1)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = f"{value:g}" if isinstance(value, float) else str(value)
        return number + UNITS.get(rule.source, "")
    if rule.source == Source.BODY:
        return "the body"
    text = json.dumps(value)
    return text if len(text) <= 120 else text[:117] + "..."


def show_expected(rule: Rule, threshold: str) -> str:
    expected = parse_expected(threshold)
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        return f"{expected:g}{UNITS.get(rule.source, '')}"
    return json.dumps(expected)


def describe(rule: Rule, value: Any, threshold: str, level: str) -> str:
    if rule.source == Source.CERT_DAYS and rule.operator in ORDERED:
        days = to_number(value)
        shown = f"{days:g}" if days is not None else show(rule, value)
        if days is not None and days < 0:
            return f"certificate expired {-days:g} days ago ({level} < {threshold})"
        return f"certificate expires in {shown} days ({level} {BROKEN[rule.operator]} {threshold})"
    label = rule.label
    if rule.windowed:
        prefix = {Agg.P50: "p50 ", Agg.P95: "p95 ", Agg.P99: "p99 ", Agg.AVG: "average "}
        prefix |= {Agg.MAX: "max "}
        label = prefix.get(rule.aggregate, "") + label
    suffix = ""
    if rule.windowed:
        span = format_span(rule.window or 0)
        suffix = f" for {span}" if rule.aggregate == Agg.HELD else f" over {span}"
    op = rule.operator
    if op in ORDERED:
        number = to_number(value)
        if number is None:
            return f"{label} is {show(rule, value)}, not a number{suffix}"
        return f"{label} {show(rule, value)} {BROKEN[op]} {show_expected(rule, threshold)}{suffix}"
    if op == Op.EQ:
        return f"{label} is {show(rule, value)}, expected {show_expected(rule, threshold)}{suffix}"
    if op == Op.NE:
        return f"{label} is {show(rule, value)}{suffix}"
    if op == Op.CONTAINS:
        return f"{label} does not contain {json.dumps(threshold)}{suffix}"
    if op == Op.NOT_CONTAINS:
        return f"{label} contains {json.dumps(threshold)}{suffix}"
    if op == Op.MATCHES:
        return f"{label} does not match /{threshold}/{suffix}"
    return f"{label} is {show(rule, value)}, expected one of {threshold}{suffix}"


def format_span(seconds: int) -> str:
    if seconds % 3600 == 0 and seconds >= 3600:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds // 60} min"
    return f"{seconds} s"


# --- Validation -------------------------------------------------------------------------


def validate_assertion(assertion: Assertion) -> None:
    errors: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    if not assertion.warning_value and not assertion.critical_value:
        add("critical_value", "set a critical value, a warning value, or both")
    if assertion.source in (Source.JSON_PATH, Source.HEADER) and not assertion.selector:
        add(
            "selector",
            f"name the {'JSON path' if assertion.source == Source.JSON_PATH else 'header'}",
        )
    if assertion.source == Source.JSON_PATH and assertion.selector:
        try:
            parse_path(assertion.selector)
        except ValueError as exc:
            add("selector", str(exc))
    for name in ("warning_value", "critical_value"):
        value = getattr(assertion, name)
        if not value:
            continue
        if assertion.operator in ORDERED and to_number(value) is None:
            add(name, f"must be a number for {assertion.get_operator_display()}, got {value!r}")
        if assertion.operator == Op.MATCHES:
            try:
                re.compile(value)
            except re.error as exc:
                add(name, f"is not a valid regular expression ({exc})")
    windowed = assertion.aggregate != Agg.LAST
    if windowed and not assertion.window:
        add("window", "a window aggregate needs a window in seconds")
    if windowed and assertion.operator not in ORDERED and assertion.aggregate != Agg.HELD:
        add("aggregate", "percentiles and averages need <, ≤, > or ≥")
    if assertion.window and not windowed:
        add("window", "only used with a window aggregate")
    if errors:
        raise ValidationError(errors)
