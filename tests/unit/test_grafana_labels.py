"""The Grafana dashboard's queries group and label by labels the metrics really have.

Each panel's PromQL is parsed (the subset the dashboard uses: selectors, aggregations
with ``by``/``without``, functions, arithmetic and comparisons) and its labels are
followed through: every label in a ``by (...)``, ``without (...)`` or matcher must exist on
the metric it applies to, as defined in ``core/metrics.py``, and every ``{{label}}`` in a
legend must exist on the series the query returns. A panel that groups by a label its
metric lacks draws one nameless line; a legend naming a missing label prints nothing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.metrics import MetricWrapperBase

from core import metrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "churnstream.json"

# Labels Prometheus attaches to every scraped series (the scrape target's).
TARGET_LABELS = frozenset({"job", "instance"})
AGGREGATIONS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "group"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("", "_sum", "_count", "_created"),
}
TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'|(?P<string>"(?:[^"\\]|\\.)*")|(?P<range>\[[^\]]*\])'
    r"|(?P<op>==|!=|>=|<=|=~|!~|[-+*/^<>=(){},]))"
)

Labels = frozenset[str] | None  # None: a scalar


def metric_labels() -> dict[str, frozenset[str]]:
    """Series name -> the labels it carries, for every series core.metrics can export."""
    labels: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names = frozenset(value._labelnames) | TARGET_LABELS
            for family in value.describe():
                for suffix in SUFFIXES[family.type]:
                    extra = {"le"} if suffix == "_bucket" else set()
                    labels[family.name + suffix] = names | extra
    return labels


class QueryError(AssertionError):
    pass


@dataclass
class Parser:
    """A recursive-descent reader of one expression, returning its result's labels."""

    text: str
    known: dict[str, frozenset[str]]

    def __post_init__(self) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(self.text.rstrip()):
            match = TOKEN.match(self.text, position)
            if match is None or match.end() == position:
                raise QueryError(f"cannot read {self.text[position:]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.at = 0

    def parse(self) -> Labels:
        labels = self.expression()
        if self.at != len(self.tokens):
            raise QueryError(f"unread tail {self.tokens[self.at :]}")
        return labels

    # --- tokens --------------------------------------------------------------------------

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.at] if self.at < len(self.tokens) else ("end", "")

    def take(self, value: str | None = None) -> str:
        kind, text = self.peek()
        if kind == "end" or (value is not None and text != value):
            raise QueryError(f"expected {value!r} at {text!r} in {self.text}")
        self.at += 1
        return text

    def label_list(self) -> set[str]:
        self.take("(")
        names: set[str] = set()
        while self.peek()[1] != ")":
            names.add(self.take())
            if self.peek()[1] == ",":
                self.take(",")
        self.take(")")
        return names

    # --- grammar -------------------------------------------------------------------------

    def expression(self) -> Labels:
        left = self.operand()
        while self.peek()[0] == "op" and self.peek()[1] not in ("(", ")", "{", "}", ","):
            operator = self.take()
            right = self.operand()
            if left is not None and right is not None and left != right:
                raise QueryError(
                    f"{operator!r} between series with labels {sorted(left)} and "
                    f"{sorted(right)} matches nothing: {self.text}"
                )
            left = right if left is None else left
        return left

    def operand(self) -> Labels:
        kind, text = self.peek()
        if kind == "number":
            self.take()
            return None
        if text == "(":
            self.take("(")
            inner = self.expression()
            self.take(")")
            return inner
        if kind != "name":
            raise QueryError(f"unexpected {text!r} in {self.text}")
        self.take()
        if text in AGGREGATIONS:
            return self.aggregation()
        if self.peek()[1] == "(":
            return self.function(text)
        return self.selector(text)

    def aggregation(self) -> Labels:
        grouping: tuple[str, set[str]] | None = None
        if self.peek()[1] in ("by", "without"):
            grouping = (self.take(), self.label_list())
        self.take("(")
        argument = self.expression()
        self.take(")")
        if grouping is None and self.peek()[1] in ("by", "without"):
            grouping = (self.take(), self.label_list())
        if argument is None:
            raise QueryError(f"aggregation of a scalar in {self.text}")
        if grouping is None:
            return frozenset()
        how, names = grouping
        missing = names - argument
        if missing:
            raise QueryError(
                f"{how} ({', '.join(sorted(names))}): {sorted(missing)} not on the series "
                f"(labels {sorted(argument)}) in {self.text}"
            )
        return frozenset(names) if how == "by" else argument - names

    def function(self, name: str) -> Labels:
        self.take("(")
        arguments = [self.expression()]
        while self.peek()[1] == ",":
            self.take(",")
            arguments.append(self.expression())
        self.take(")")
        vectors = [a for a in arguments if a is not None]
        if len(vectors) != 1:
            raise QueryError(f"{name}() needs one series argument in {self.text}")
        if name == "histogram_quantile":
            if "le" not in vectors[0]:
                raise QueryError(f"histogram_quantile over series without 'le' in {self.text}")
            return vectors[0] - {"le"}
        return vectors[0]

    def selector(self, name: str) -> Labels:
        if name not in self.known:
            raise QueryError(f"{name} is not exported by core/metrics.py")
        labels = self.known[name]
        if self.peek()[1] == "{":
            self.take("{")
            while self.peek()[1] != "}":
                label = self.take()
                if label not in labels:
                    raise QueryError(f"matcher on {label!r}, which {name} lacks")
                self.take()  # the operator
                self.take()  # the quoted value
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
        if self.peek()[0] == "range":
            self.take()
        return labels


def result_labels(expr: str) -> Labels:
    return Parser(expr, metric_labels()).parse()


def targets() -> list[tuple[str, str, str]]:
    document = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in document["panels"]
        if panel["type"] != "row"
        for target in panel["targets"]
    ]


@pytest.mark.parametrize(("title", "expr", "legend"), targets(), ids=lambda v: str(v)[:60])
def test_grouping_and_legend_labels_exist_on_the_metric(title: str, expr: str, legend: str) -> None:
    labels = result_labels(expr)
    assert labels is not None, f"{title}: {expr} is a scalar"
    for name in re.findall(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}", legend):
        assert name in labels, (
            f"{title}: the legend {legend!r} names {name!r}, but {expr} returns only "
            f"{sorted(labels)}"
        )


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("sum by (route) (rate(churn_worker_dlq_total[5m]))", "not on the series"),
        ("sum(rate(churn_worker_dlq_total[5m])) by (code)", "not on the series"),
        ("histogram_quantile(0.5, sum by (route) (rate(churn_api_request_duration_seconds_bucket[5m])))", "without 'le'"),
        ("churn_worker_dlq_total{code=\"x\"}", "lacks"),
        ("sum by (band) (rate(churn_worker_scores_total[5m])) / sum(rate(churn_worker_scores_total[5m]))", "matches nothing"),
        ("churn_worker_no_such_metric", "not exported"),
    ],
)  # fmt: skip
def test_the_checker_finds_labels_a_metric_lacks(expr: str, problem: str) -> None:
    with pytest.raises(QueryError, match=problem):
        result_labels(expr)


def test_the_checker_follows_labels_through_the_query() -> None:
    assert result_labels("sum by (reason) (rate(churn_worker_dlq_total[5m]))") == {"reason"}
    assert result_labels(
        "histogram_quantile(0.99, sum by (le, route) "
        "(rate(churn_api_request_duration_seconds_bucket[5m])))"
    ) == {"route"}
    assert result_labels("churn_worker_model_info == 1") == {"version", "job", "instance"}
    assert result_labels("sum(rate(churn_worker_events_applied_total[1m]))") == frozenset()
