"""The dashboards' panel queries as tests run them (tests/unit/test_grafana.py parses them,
tests/lab/test_dashboards.py asks the lab's Prometheus): every target of every panel, with
Grafana's variables replaced by what Grafana itself would send for the dashboards' defaults."""

from __future__ import annotations

import json
import re

from tasks import grafana

# Grafana's built-ins, for a 6 h dashboard: $__rate_interval is at least four scrape intervals;
# 5m covers Prometheus' 1m default scrape and is what a fresh lab host already has two samples in.
BUILT_INS = {"__rate_interval": "5m", "__interval": "1m", "__range": "6h"}
# A template variable at its default "All": the dashboards set allValue ".*" (a regex matcher).
ALL = ".*"


def dashboards() -> dict[str, dict]:
    return {path.stem: json.loads(path.read_text()) for path in grafana.dashboard_files()}


def queries(board: dict) -> list[tuple[str, str]]:
    """(panel title, expr) of every target of every panel."""
    return [(panel["title"], target.get("expr", "")) for panel in board["panels"] for target in panel["targets"]]


def substitute(expr: str, board: dict | None = None) -> str:
    """`expr` with $var, ${var} and [[var]] replaced: built-ins by BUILT_INS, the board's own
    variables by their "All" value. An unknown variable is an error, not a silent empty string."""
    own = {v["name"]: v.get("allValue") or ALL for v in (board or {}).get("templating", {}).get("list", [])}
    known = {**BUILT_INS, **own}

    def value(match: re.Match) -> str:
        name = next(g for g in match.groups() if g)
        if name not in known:
            raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")
        return known[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", value, expr)
