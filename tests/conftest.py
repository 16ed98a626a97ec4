"""Shared test plumbing: a skip always says why, in the summary line (-ra) and on stderr."""

import sys
from collections import defaultdict

import pytest

# Session-scoped lab hosts that several modules share (tests/lab/conftest.py).
SHARED_HOSTS = ("converged_host", "alert_host")


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


def pytest_collection_modifyitems(config, items):
    """`make test` runs two pytest-xdist workers (-n 2 --dist loadgroup): each group runs whole on one
    worker. A group is a module, or every module of one shared lab host, so that host is brought up
    and converged once, by one worker, and its modules never run beside each other. The shared
    hosts' groups go first: the longest runs start while the other worker takes the rest."""
    modules = defaultdict(set)
    for item in items:
        modules[item.module.__name__].update(f for f in SHARED_HOSTS if f in item.fixturenames)
    for item in items:
        shared = sorted(modules[item.module.__name__])
        item.add_marker(pytest.mark.xdist_group(shared[0] if shared else item.module.__name__))
    items.sort(key=lambda item: not modules[item.module.__name__])  # stable: collection order within
