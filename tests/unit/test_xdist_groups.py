"""`make test`'s two workers: a module, or every module of one shared lab host, runs whole on one
worker. xdist's loadgroup marks did not reach its scheduler under pytest 9.2, so tests of one module,
and two deploys of one shared host, ran on both workers at once (CI: 39 failed, 31 errors). These run
the project's scheduler in a real two-worker session, and hold its source scan to pytest's own
fixture resolution over tests/lab."""

import json
import os
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import SHARED_HOSTS, shared_host_of, shared_scope

ROOT = Path(__file__).resolve().parents[2]
SHARED = SHARED_HOSTS[0]  # spelt through the constant: this module itself uses no shared host

CONFTEST = f"""
import pytest
from tests.conftest import pytest_collection_modifyitems, pytest_xdist_make_scheduler  # noqa: F401

@pytest.fixture(scope="session")
def {SHARED}():
    return "shared"
"""

TEST_MODULE = """
import json, os, pytest

@pytest.mark.parametrize("n", range(8))
def test_where(n, {fixture}):
    with open(os.environ["WHERE_LOG"], "a") as f:
        f.write(json.dumps([__name__, os.environ["PYTEST_XDIST_WORKER"]]) + "\\n")
"""


def run_pytest(args, cwd, basetemp, **env):
    # --basetemp of its own: a nested session given none makes the next numbered directory under
    # /tmp/pytest-of-USER and prunes all but the newest three, the running suite's own among them
    # (its lab and Terraform tests then lost their directories: CI, 23 errors).
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={basetemp}",
                         *args], cwd=cwd,
                        env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                        timeout=300)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    return cp


def test_each_module_and_each_shared_host_runs_whole_on_one_worker(tmp_path):
    pytest.importorskip("xdist")
    for name, fixture in [("test_alone_a", "tmp_path"), ("test_alone_b", "tmp_path"),
                          ("test_shared_a", SHARED), ("test_shared_b", SHARED)]:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(TEST_MODULE.format(fixture=fixture)))
    (tmp_path / "conftest.py").write_text(textwrap.dedent(CONFTEST))
    log = tmp_path / "where.log"
    run_pytest(["-n", "2", "--dist", "loadscope", "--no-loadscope-reorder", str(tmp_path)], tmp_path,
               tmp_path / "basetemp", WHERE_LOG=str(log))
    workers = defaultdict(set)
    lines = log.read_text().splitlines()
    for line in lines:
        module, worker = json.loads(line)
        workers[module].add(worker)
    assert len(lines) == 32
    assert all(len(w) == 1 for w in workers.values()), dict(workers)
    assert workers["test_shared_a"] == workers["test_shared_b"], dict(workers)


DUMP_PLUGIN = """
import json, os
from tests.conftest import SHARED_HOSTS

def pytest_collection_finish(session):
    uses = {}
    for item in session.items:
        uses.setdefault(str(item.path), set()).update(f for f in SHARED_HOSTS if f in item.fixturenames)
    with open(os.environ["USES_LOG"], "w") as f:
        json.dump({path: sorted(found) for path, found in uses.items()}, f)
"""


def test_the_source_scan_names_the_shared_host_pytest_resolves(tmp_path):
    (tmp_path / "dump_uses.py").write_text(DUMP_PLUGIN)
    log = tmp_path / "uses.json"
    run_pytest(["--collect-only", "-p", "dump_uses", "tests/lab"], ROOT, tmp_path / "basetemp", USES_LOG=str(log),
               PYTHONPATH=f"{ROOT}:{tmp_path}")
    uses = json.loads(log.read_text())
    assert any(uses.values()), "no module of tests/lab uses a shared host: nothing was checked"
    for path, found in uses.items():
        assert len(found) <= 1, f"{path} uses two shared hosts: they would need one group"
        assert shared_host_of(Path(path)) == (found[0] if found else None), path


def test_the_terraform_modules_are_one_scope():
    modules = sorted((ROOT / "tests/terraform").glob("test_*.py"))
    assert len(modules) > 3
    assert {shared_scope(m) for m in modules} == {"terraform"}
    assert shared_scope(ROOT / "tests/unit/test_settings.py") is None
