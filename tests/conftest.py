"""Shared test plumbing: a skip always says why, in the summary line (-ra) and on stderr."""

import sys

import pytest


def skip_because(reason: str):
    print(f"SKIP: {reason}", file=sys.stderr)
    pytest.skip(reason)


# Under CI=true a skipped lab or Terraform test fails the run (tests/ci_strict.py).
from tests.ci_strict import (  # noqa: E402,F401
    pytest_collectreport,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_terminal_summary,
)
