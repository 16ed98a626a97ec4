"""Under CI=true a skipped lab, Terraform or tools test fails the run.

Those tests skip, saying why, where the engine, Terraform or a `make tools` tool is missing: right
on a developer's machine, wrong in CI, where a skip would land code nothing tested. tests/conftest.py imports
these hooks; tests/unit/test_ci_strict.py proves them.
"""

from __future__ import annotations

import os

STRICT_MARKERS = ("lab", "terraform", "tools")
STRICT_DIRS = ("tests/lab/", "tests/terraform/")  # a module skipped whole (importorskip) has no markers
_skipped: list[str] = []


def _strict() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_runtest_logreport(report):
    if report.skipped and _strict() and (any(m in report.keywords for m in STRICT_MARKERS)
                                         or report.nodeid.startswith(STRICT_DIRS)):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


pytest_collectreport = pytest_runtest_logreport


def pytest_sessionfinish(session, exitstatus):
    if _skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _skipped:
        terminalreporter.write_sep("=", "CI=true: lab/terraform/tools tests were skipped, failing the run", red=True)
        for line in _skipped:
            terminalreporter.write_line(f"SKIPPED IN CI: {line}")
