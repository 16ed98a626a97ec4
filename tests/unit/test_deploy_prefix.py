"""The lab's prefix deploy (tests/lab/deploy_prefix.py, tests/lab/stages.py) finds exactly the
stages deploy.py has, in order, keeps the prelude in every prefix, and refuses an N it cannot run.

The expected stages are read here another way than stages.py reads them: from the task modules'
source (a function under `@deploy("...")`), not from pyinfra's wrapper at run time. Neither list is
written down, so a stage added to deploy.py (main is adding `packages()`) needs no edit here.
No Docker, no lab."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap

import pytest
from pyinfra.api.exceptions import PyinfraError

from tests.lab import stages
from tests.lab.stages import DEPLOY, ENV, REPO


def deploy_decorated(module: str) -> dict[str, str]:
    """function name -> the name given to @deploy, for each such function in a module's source."""
    tree = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Name)
                        and decorator.func.id == "deploy"):
                    found[node.name] = decorator.args[0].value if decorator.args else node.name
    return found


def expected_stages(path=DEPLOY) -> list[tuple[str, str, int]]:
    """(name, @deploy name, line) of each top-level call in deploy.py of a @deploy function it
    imported from tasks.*, in order."""
    tree = ast.parse(path.read_text())
    imported = {alias.asname or alias.name: (node.module, alias.name)
                for node in tree.body if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tasks.")
                for alias in node.names}
    calls = [(node.value.func.id, node.lineno) for node in tree.body
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
             and isinstance(node.value.func, ast.Name) and node.value.func.id in imported]
    result = []
    for name, line in calls:
        module, attribute = imported[name]
        decorated = deploy_decorated(module)
        if attribute in decorated:
            result.append((name, decorated[attribute], line))
    return result


def test_finds_exactly_deploy_pys_stages_in_order():
    expected = expected_stages()
    assert len(expected) >= 2, expected  # deploy.py has stages; the rest of this file relies on it
    assert [(s.name, s.deploy_name, s.line) for s in stages.stages()] == expected


def test_the_prelude_is_no_stage():
    names = {s.name for s in stages.stages()}
    assert "tcp_nodelay" not in names and "settings" not in names


@pytest.mark.parametrize("n", range(1, len(expected_stages()) + 1))
def test_a_prefix_is_deploy_py_up_to_its_nth_stage(n):
    found = stages.stages()
    body = ast.parse(DEPLOY.read_text()).body
    kept = stages.prefix(n).body
    assert [ast.dump(node) for node in kept] == [ast.dump(node) for node in body[: found[n - 1].index + 1]]
    # the prelude (everything before the first stage: imports, tcp_nodelay, settings.*) is in every prefix
    prelude = body[: found[0].index]
    assert any(isinstance(node, ast.Expr) for node in prelude), "deploy.py's prelude calls"
    assert [ast.dump(node) for node in kept[: len(prelude)]] == [ast.dump(node) for node in prelude]
    called = [node.value.func.id for node in kept[len(prelude):]
              if isinstance(node, ast.Expr) and isinstance(node.value.func, ast.Name)]
    assert called == [s.name for s in found[:n]]


def test_the_code_is_compiled_as_deploy_py():
    found = stages.stages()
    code = stages.prefix_code(len(found))
    assert code.co_filename == str(DEPLOY)  # tracebacks and pyinfra's op order point at deploy.py
    assert max(line for _, _, line in code.co_lines() if line) == found[-1].line


@pytest.mark.parametrize("environ", [{}, {ENV: ""}, {ENV: "0"}, {ENV: "-1"}, {ENV: "two"}, {ENV: "BEYOND"}])
def test_n_missing_zero_or_beyond_the_stages_is_an_error(environ):
    count = len(stages.stages())
    if environ.get(ENV) == "BEYOND":
        environ = {ENV: str(count + 1)}
    with pytest.raises(PyinfraError, match=rf"{ENV}.*give 1\.\.{count} \(deploy.py's stages: "):
        stages.wanted(environ, stages.stages())
    with pytest.raises(PyinfraError, match=f"deploy.py has {count}"):
        stages.prefix(count + 1)
    with pytest.raises(PyinfraError, match=f"deploy.py has {count}"):
        stages.prefix(0)


def test_n_within_the_stages():
    found = stages.stages()
    assert stages.wanted({ENV: "1"}, found) == 1
    assert stages.wanted({ENV: f" {len(found)} "}, found) == len(found)


def test_what_counts_as_a_stage(tmp_path):
    """Bare-name calls of @deploy functions from tasks.* (also under another name); not a call of
    a plain function from tasks.*, of an attribute, or of a @deploy function not imported from tasks.*.
    A statement between two stages goes with the one it follows."""
    deploy = tmp_path / "deploy.py"
    deploy.write_text(textwrap.dedent("""\
        from pyinfra.api import deploy
        from tasks import settings
        from tasks.base import base as first
        from tasks.common import tcp_nodelay
        from tasks.docker import docker

        @deploy("Local")
        def local():
            pass

        tcp_nodelay()
        settings.validate({})
        first()
        local()
        docker()
        first()
        """))
    found = stages.stages(deploy)
    assert [(s.name, s.deploy_name, s.line) for s in found] == [
        ("first", "Base system", 13), ("docker", "Docker engine", 15), ("first", "Base system", 16)]
    assert ast.unparse(stages.prefix(1, deploy)).splitlines()[-1] == "first()"
    assert ast.unparse(stages.prefix(2, deploy)).splitlines()[-2:] == ["local()", "docker()"]


def test_the_deploy_file_refuses_without_n():
    """Run by pyinfra as a deploy file (@local: nothing is reached) it fails before any operation,
    saying what to give."""
    env = {k: v for k, v in os.environ.items() if k != ENV}
    for extra in ({}, {ENV: "0"}):
        run = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "@local", "tests/lab/deploy_prefix.py"],
                             cwd=REPO, capture_output=True, text=True, timeout=60, env={**env, **extra})
        assert run.returncode != 0
        assert f"{ENV}" in run.stderr and f"give 1..{len(stages.stages())}" in run.stderr, run.stderr[-2000:]
