"""Shared test plumbing: a skip always says why, in the summary line (-ra) and on stderr."""

import functools
import re
import sys
from pathlib import Path

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


@functools.cache
def shared_host_of(path: Path) -> str | None:
    """The shared lab host a test module uses, found in its source (the xdist controller that
    schedules never collects, so it cannot ask pytest); tests/unit/test_xdist_groups.py proves the
    answer matches the fixtures pytest resolves for tests/lab."""
    source = path.read_text() if path.suffix == ".py" and path.is_file() else ""
    return next((f for f in SHARED_HOSTS if re.search(rf"\b{f}\b", source)), None)


TERRAFORM_TESTS = Path(__file__).resolve().parent / "terraform"


def shared_scope(path: Path) -> str | None:
    """The scope a test module shares with others, if any: every module of tests/terraform (its
    session fixtures start checkov, the provider schema and the pre-module applies once, in the
    background, for all of them; split over two workers each started its own), or the shared lab
    host it uses."""
    if path.resolve().parent == TERRAFORM_TESTS:
        return "terraform"
    return shared_host_of(path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`make test` runs two pytest-xdist workers with `--dist loadscope`, where a scope here is a
    module, or every module of one shared scope (shared_scope): a shared lab host is brought up and
    converged once, by one worker, and its modules never run beside each other. (xdist's own
    loadgroup marks do not reach its scheduler under pytest 9.2: one module ran on both workers.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedScopeScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return shared_scope(config.rootpath / module) or module

    return SharedScopeScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """The shared hosts' modules go first (every worker collects the same order, and
    `--no-loadscope-reorder` keeps it): the longest runs start while the other worker takes the rest."""
    items.sort(key=lambda item: shared_host_of(item.path) is None)  # stable: collection order within
