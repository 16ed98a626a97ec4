"""tests/ci_strict.py: CI=true turns a skipped lab/Terraform test into a failed run."""

import os
import subprocess
import sys
import textwrap

import pytest

from tasks import REPO


@pytest.fixture
def suite(tmp_path):
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        from tests.ci_strict import (pytest_collectreport, pytest_runtest_logreport, pytest_sessionfinish,
                                     pytest_terminal_summary)
        def pytest_configure(config):
            config.addinivalue_line("markers", "lab: lab")
    """))
    (tmp_path / "test_suite.py").write_text(textwrap.dedent("""
        import pytest
        def test_unit():
            assert True
        @pytest.mark.lab
        def test_needs_the_engine():
            pytest.skip("no Docker engine could be started")
    """))
    return tmp_path


def run(suite, ci: str | None):
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           "--rootdir", str(suite), str(suite)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_a_skipped_lab_test_fails_the_run_in_ci(suite):
    cp = run(suite, "true")
    assert cp.returncode == 1, cp.stdout
    assert "SKIPPED IN CI" in cp.stdout and "no Docker engine could be started" in cp.stdout


def test_outside_ci_the_skip_is_reported_and_the_run_passes(suite):
    cp = run(suite, None)
    assert cp.returncode == 0, cp.stdout
    assert "1 skipped" in cp.stdout and "SKIPPED IN CI" not in cp.stdout
