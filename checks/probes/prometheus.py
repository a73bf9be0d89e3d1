"""Prometheus probe: scrape a /metrics page and judge the series a team watches.

Each entry of the `series` option reads one number from the page:

- `value`: the current value (a gauge, or a counter's running total);
- `increase`: how much a counter grew since this region's previous scrape;
- `rate`: that increase per second;
- `quantile`: a histogram's quantile (`"quantile": 0.95`) over the observations
  made since the previous scrape, interpolated within its `_bucket` series the
  way Prometheus' `histogram_quantile(0.95, increase(x_bucket[...]))` does. A
  quantile over everything since the process started would barely move when a
  long-running service turns slow, so it is not what "P95 < 500 ms" means.

A selector (`worker_task_total{status="failure"}`, with `=`, `!=`, `=~`, `!~`)
may match several label sets: their values are summed, histogram buckets per
`le`, like PromQL's `sum(...)`. A labelled counter appears on the page only once
it first counts, so for increase and rate a metric on the page with no matching
label set counts 0; a metric not on the page at all is missing.

Each series becomes `values["metric"][name]` and, when it has a warning or a
critical value, a rule on it. `op` is how the value compares with them when
healthy, `le` (at most) by default, so reasons read `ws_messages_dropped_total
increase 3 > 0`.

Increase, rate and quantile need the previous scrape, remembered per region in
`Observation.memory`. The assertion engine reads a value it does not get as
"X is missing" (critical), so a rule is made only when this run can know the
value: not on the first scrape, which takes a baseline (and says so in the
summary); for a quantile, only once one has been measured, because an interval
without observations has no quantile: it keeps the last one measured.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from django.conf import settings
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from checks.assertions import Rule
from checks.models import Assertion
from checks.probes import http
from checks.probes.base import Observation, OptionErrors, Options, Probe, ProbeSpec

KNOWN = {"series", "headers", "bearer_token", "basic_auth", "verify_tls"}
SERIES_KEYS = {"name", "selector", "mode", "quantile", "op", "warning", "critical"}
MODES = ("value", "increase", "rate", "quantile")
Op = Assertion.Operator
OPERATORS = (Op.LT, Op.LE, Op.GT, Op.GE, Op.EQ, Op.NE)
MAX_SERIES = 50
# Ask for the classic text format, which every exporter speaks; a page that
# comes back as OpenMetrics anyway is read with its own parser.
ACCEPT = "text/plain;version=0.0.4"
EXAMPLE = '{"selector": "ws_messages_dropped_total", "mode": "increase", "critical": 0}'

_NAME = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*")
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(,|(?=\}))')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.label, "")
        if self.op in ("=", "!="):
            return (actual == self.value) == (self.op == "=")
        found = re.fullmatch(self.value, actual) is not None
        return found == (self.op == "=~")


@dataclass(frozen=True)
class Selector:
    text: str
    name: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, labels: dict[str, str], bucket: bool = False) -> bool:
        # A bucket's own `le` is what a quantile spreads over, never a filter.
        return all(m.matches(labels) for m in self.matchers if not (bucket and m.label == "le"))


def parse_selector(text: str) -> Selector:
    """`worker_task_total{status="failure", queue=~"probes.*"}` → a Selector."""
    match = _NAME.match(text)
    if match is None:
        raise ValueError("must start with a metric name, e.g. worker_task_total")
    name, position, matchers = match.group(1), match.end(), []
    if position < len(text):
        if text[position] != "{" or not text.rstrip().endswith("}"):
            raise ValueError('labels go in braces after the name, e.g. x{status="failure"}')
        position += 1
        end = len(text.rstrip()) - 1
        while position < end and text[position:end].strip():
            found = _MATCHER.match(text, position)
            if found is None or found.end() > end + 1:
                raise ValueError(f'cannot read the labels at {text[position:end]!r}; use a="b"')
            label, op, raw, _ = found.groups()
            value = re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), raw)
            if op in ("=~", "!~"):
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"{label}{op}{raw!r} is not a valid regex ({exc})") from None
            matchers.append(Matcher(label, op, value))
            position = found.end()
    return Selector(text.strip(), name, tuple(matchers))


@dataclass(frozen=True)
class Series:
    name: str
    selector: Selector
    mode: str = "value"
    quantile: float | None = None
    op: str = Op.LE
    warning: str = ""
    critical: str = ""

    @property
    def identity(self) -> str:
        """What a remembered baseline must have been taken for."""
        return f"{self.mode} {self.quantile or ''} {self.selector.text}"


@dataclass(frozen=True)
class PrometheusConfig:
    url: str
    series: tuple[Series, ...]
    headers: dict[str, str] = field(default_factory=dict)
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None
    verify_tls: bool = True

    def request(self) -> http.HttpConfig:
        return http.HttpConfig(
            url=self.url,
            headers={"Accept": ACCEPT, **self.headers},
            bearer_token=self.bearer_token,
            basic_auth=self.basic_auth,
            verify_tls=self.verify_tls,
        )


def parse(target: str, raw: Any, errors: OptionErrors) -> PrometheusConfig:
    url = URL(target) if target else None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        errors.target(
            "must be the http:// or https:// URL of a metrics page, "
            "e.g. http://api.internal:8000/metrics"
        )
    opts = Options(raw, KNOWN, errors)
    basic = opts.mapping("basic_auth")
    if basic and set(basic) != {"username", "password"}:
        errors.option("basic_auth", 'must be {"username": ..., "password": ...}')
    return PrometheusConfig(
        url=target,
        series=tuple(_series(opts.list("series"), errors)),
        headers=opts.mapping("headers"),
        bearer_token=opts.str("bearer_token"),
        basic_auth=(basic["username"], basic["password"]) if len(basic) == 2 else None,
        verify_tls=opts.bool("verify_tls", True),
    )


def _series(items: list[Any], errors: OptionErrors) -> list[Series]:
    if not items:
        errors.option("series", f"list at least one series to read, e.g. [{EXAMPLE}]")
    if len(items) > MAX_SERIES:
        errors.option("series", f"at most {MAX_SERIES} series per monitor")
    found: list[Series] = []
    for number, item in enumerate(items[:MAX_SERIES], start=1):
        where = f"series[{number}]"
        if not isinstance(item, dict) or not isinstance(item.get("selector"), str):
            errors.option(where, f"must be an object with a selector, e.g. {EXAMPLE}")
            continue
        series = _one_series(item, where, errors)
        if series is None:
            continue
        if any(other.name == series.name for other in found):
            errors.option(where, f"name {series.name!r} is used twice; give each a name")
            continue
        found.append(series)
    return found


def _one_series(item: dict[str, Any], where: str, errors: OptionErrors) -> Series | None:
    problems: list[str] = []
    for key in sorted(set(item) - SERIES_KEYS):
        problems.append(f"unknown key {key!r} (known: {', '.join(sorted(SERIES_KEYS))})")
    try:
        selector = parse_selector(item["selector"])
    except ValueError as exc:
        problems.append(f"selector {exc}")
        selector = Selector("", "")
    mode = item.get("mode", "value")
    if mode not in MODES:
        problems.append(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    quantile = item.get("quantile", 0.95 if mode == "quantile" else None)
    if quantile is not None and mode != "quantile":
        problems.append('quantile is only used with "mode": "quantile"')
    elif mode == "quantile" and (
        isinstance(quantile, bool) or not isinstance(quantile, int | float) or not 0 < quantile < 1
    ):
        problems.append(f"quantile must be a number between 0 and 1, e.g. 0.95; got {quantile!r}")
    op = item.get("op", Op.LE)
    if op not in OPERATORS:
        problems.append(f"op must be one of {', '.join(OPERATORS)}, got {op!r}")
    warning, critical = (
        _threshold(item.get(key), key, problems) for key in ("warning", "critical")
    )
    if op in (Op.LT, Op.LE) and warning and critical and float(warning) >= float(critical):
        problems.append("warning must be below critical (the value must stay low)")
    if op in (Op.GT, Op.GE) and warning and critical and float(warning) <= float(critical):
        problems.append("warning must be above critical (the value must stay high)")
    name = item.get("name") or _default_name(selector.text, mode, quantile)
    if not isinstance(name, str):
        problems.append("name must be text")
    for problem in problems:
        errors.option(where, problem)
    if problems:
        return None
    return Series(name.strip(), selector, mode, quantile, op, warning, critical)


def _threshold(value: Any, key: str, problems: list[str]) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.append(f"{key} must be a number, got {value!r}")
        return ""
    try:
        float(value)
    except ValueError:
        problems.append(f"{key} must be a number, got {value!r}")
        return ""
    return str(value).strip()


def _default_name(selector: str, mode: str, quantile: Any) -> str:
    if mode == "quantile" and isinstance(quantile, int | float):
        return f"{selector} p{quantile * 100:g}"
    return selector if mode == "value" else f"{selector} {mode}"


# --- The page ------------------------------------------------------------------------

Buckets = dict[str, float]  # upper bound ("0.5", "+Inf") → cumulative count


@dataclass
class Page:
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)
    # Sample names the page declares with # TYPE even when no sample is there yet.
    declared: set[str] = field(default_factory=set)

    def has(self, name: str) -> bool:
        return name in self.samples or name in self.declared

    def total(self, selector: Selector, counter: bool) -> float | None:
        if not self.has(selector.name):
            return None
        rows = self.samples.get(selector.name, [])
        matched = [value for labels, value in rows if selector.matches(labels)]
        if not matched:
            return 0.0 if counter else None
        total = float(sum(matched))
        # NaN or ±Inf is no measurement (and JSON storage cannot hold it).
        return total if math.isfinite(total) else None

    def buckets(self, selector: Selector) -> Buckets | None:
        name = selector.name.removesuffix("_bucket") + "_bucket"
        if not self.has(name):
            return None
        summed: Buckets = {}
        for labels, value in self.samples.get(name, []):
            if "le" in labels and math.isfinite(value) and selector.matches(labels, bucket=True):
                bound = _bound(labels["le"])
                summed[bound] = summed.get(bound, 0.0) + value
        return summed


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
SUFFIXES["summary"] = ("_count", "_sum")


def read_page(text: str, content_type: str) -> Page:
    parser = (
        openmetrics_families if "openmetrics" in content_type else text_string_to_metric_families
    )
    page = Page()
    for family in parser(text):
        page.declared.add(family.name)
        page.declared.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        for sample in family.samples:
            page.samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return page


def _bound(le: str) -> str:
    value = float(le)
    return "+Inf" if value == math.inf else repr(value)


def histogram_quantile(q: float, buckets: Buckets) -> float | None:
    """Prometheus' histogram_quantile: None when there is nothing to interpolate."""
    pairs = sorted((float(bound), count) for bound, count in buckets.items())
    if len(pairs) < 2 or pairs[-1][0] != math.inf:
        return None
    bounds = [bound for bound, _ in pairs]
    # Counts caught mid-update can fall from one bucket to the next; Prometheus evens them out.
    counts = list(accumulate((count for _, count in pairs), max))
    if counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    b = bisect_left(counts, rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (0.0, 0.0) if b == 0 else (bounds[b - 1], counts[b - 1])
    return start + (bounds[b] - start) * (rank - below) / (counts[b] - below)


def bucket_increase(current: Buckets, previous: Buckets | None) -> Buckets:
    if previous is None or set(previous) != set(current):
        return current  # first seen, or the buckets changed: count from zero
    grown = {bound: current[bound] - previous[bound] for bound in current}
    if any(value < 0 for value in grown.values()):
        return current  # the process restarted
    return grown


# --- Measuring -----------------------------------------------------------------------


@dataclass
class Measured:
    value: float | None
    entry: dict[str, Any] | None  # what to remember for the next scrape
    note: str = ""  # why there is no value, for the summary


def measure(series: Series, page: Page, entry: dict[str, Any] | None, now: float) -> Measured:
    if series.mode == "value":
        value = page.total(series.selector, counter=False)
        return Measured(value, None, "" if value is not None else "missing")
    if series.mode == "quantile":
        return _quantile(series, page, entry, now)
    current = page.total(series.selector, counter=True)
    if entry is None:
        fresh = {"id": series.identity, "base": current, "at": now}
        return Measured(None, fresh, "baseline" if current is not None else "missing")
    if current is None:
        return Measured(None, entry, "missing")  # keep the baseline for when it is back
    previous = entry["base"]
    grown = current if previous is None or current < previous else current - previous
    fresh = {"id": series.identity, "base": current, "at": now}
    if series.mode == "increase":
        return Measured(grown, fresh)
    elapsed = now - entry["at"]
    if elapsed <= 0:
        return Measured(None, fresh, "missing")
    return Measured(_tidy(grown / elapsed), fresh)


def _quantile(series: Series, page: Page, entry: dict[str, Any] | None, now: float) -> Measured:
    current = page.buckets(series.selector)
    if entry is None:
        fresh = {"id": series.identity, "base": current, "at": now, "last": None}
        return Measured(None, fresh, "baseline" if current is not None else "missing")
    if current is None:
        return Measured(None, entry, "missing")
    assert series.quantile is not None
    value = histogram_quantile(series.quantile, bucket_increase(current, entry["base"]))
    last = entry.get("last") if value is None else _tidy(value)
    fresh = {"id": series.identity, "base": current, "at": now, "last": last}
    return Measured(last, fresh, "quiet" if value is None else "")


def _tidy(value: float) -> float:
    """Four significant digits: enough for a threshold, readable in a reason."""
    return float(f"{value:.4g}")


def remembered(spec: ProbeSpec, config: PrometheusConfig) -> dict[str, dict[str, Any]]:
    """Baselines from this region's previous scrape that still fit the monitor's options."""
    memory = spec.memory or {}
    if memory.get("target") != spec.target:
        return {}
    entries = memory.get("series") or {}
    return {
        s.name: entries[s.name]
        for s in config.series
        if isinstance(entries.get(s.name), dict) and entries[s.name].get("id") == s.identity
    }


def judged(series: Series, entry: dict[str, Any] | None) -> bool:
    """Whether this run can know the series' value, so a rule may judge it."""
    if series.mode == "value":
        return True
    if entry is None:
        return False
    if series.mode == "quantile":
        return entry.get("last") is not None or entry.get("base") is None
    return True


class PrometheusProbe(Probe):
    kind = "prometheus"

    parse = staticmethod(parse)

    def implicit_rules(self, spec: ProbeSpec) -> list[Rule]:
        config = parse(spec.target, spec.options, OptionErrors())
        entries = remembered(spec, config)
        return [
            Rule(
                f"series{number}",
                Assertion.Source.METRIC,
                series.op,
                critical=series.critical,
                warning=series.warning,
                selector=series.name,
            )
            for number, series in enumerate(config.series)
            if (series.warning or series.critical) and judged(series, entries.get(series.name))
        ]

    async def observe(self, spec: ProbeSpec, resources: Any) -> Observation:
        errors = OptionErrors()
        config = parse(spec.target, spec.options, errors)
        if errors.errors:
            return Observation.failed(f"invalid options: {errors.errors}")
        started = time.perf_counter()
        try:
            status, headers, body, _ = await http.PROBE.fetch(
                config.request(), resources.http_client
            )
        except Exception as exc:
            return Observation.failed(
                http.describe_error(exc), (time.perf_counter() - started) * 1000
            )
        latency = (time.perf_counter() - started) * 1000
        if not 200 <= status < 300:
            return Observation.failed(f"the metrics endpoint answered HTTP {status}", latency)
        if len(body.encode()) >= settings.PROBE_BODY_LIMIT:
            return Observation.failed(
                f"the metrics page is larger than PROBE_BODY_LIMIT "
                f"({settings.PROBE_BODY_LIMIT} bytes)",
                latency,
            )
        try:
            # A big page takes a while to parse: off the loop the batch's probes share.
            page = await asyncio.to_thread(read_page, body, headers.get("content-type", ""))
        except ValueError as exc:
            shown = str(exc)[:120] or "unreadable line"
            return Observation.failed(f"not a Prometheus metrics page ({shown})", latency)
        return self.judge_page(spec, config, page, latency)

    def judge_page(
        self, spec: ProbeSpec, config: PrometheusConfig, page: Page, latency: float
    ) -> Observation:
        entries, now = remembered(spec, config), time.time()
        values: dict[str, float] = {}
        memory: dict[str, Any] = {}
        notes: dict[str, list[str]] = {"baseline": [], "missing": [], "quiet": []}
        for series in config.series:
            measured = measure(series, page, entries.get(series.name), now)
            if measured.value is not None:
                values[series.name] = measured.value
            if measured.entry is not None:
                memory[series.name] = measured.entry
            if measured.note:
                notes[measured.note].append(series.name)
        return Observation(
            values={"metric": values},
            latency_ms=latency,
            summary=_summary(values, notes, latency),
            memory={"target": spec.target, "series": memory},
        )


def _summary(values: dict[str, float], notes: dict[str, list[str]], latency: float) -> str:
    parts = [f"{name} {value:g}" for name, value in values.items()]
    if notes["baseline"]:
        parts.append(f"first scrape, baseline taken for {', '.join(notes['baseline'])}")
    if notes["quiet"]:
        parts.append(f"no new observations since the last scrape for {', '.join(notes['quiet'])}")
    if notes["missing"]:
        parts.append(f"not on the metrics page: {', '.join(notes['missing'])}")
    return "; ".join([*parts, f"scraped in {latency:.0f} ms"])


PROBE = PrometheusProbe()
