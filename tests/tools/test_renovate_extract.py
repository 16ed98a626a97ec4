"""Renovate itself reads the repository (`--platform=local --dry-run=extract`: no lookups, no pull
requests) in a network namespace of its own, so nothing leaves the machine, and must find each pin
as the repository holds it. tests/unit/test_renovate.py checks the regex in Python; this checks
Renovate's engine agrees. About 6 s, hence not in tests/unit."""

import json
import os
import re
import subprocess
import tomllib

import pytest

from tasks import REPO
from tests.conftest import skip_because
from tests.renovate_support import image_tags, renovate

pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> dict[str, list[dict]]:
    """manager -> its package files as Renovate extracted them."""
    try:
        subprocess.run(["unshare", "--net", "true"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as e:
        skip_because(f"`unshare --net` (root) keeps Renovate off the network and is not available here: {e}")
    home = tmp_path_factory.mktemp("renovate")
    # Only what Renovate needs: no token or host setting of the caller's reaches it.
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LOG_LEVEL": "debug",
           "LOG_FORMAT": "json", "RENOVATE_BASE_DIR": str(home / "base")}
    cp = renovate("renovate", "--platform=local", "--dry-run=extract", "--onboarding=false",
                  timeout=300, env=env, prefix=("unshare", "--net"))
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-4000:]
    for line in cp.stdout.splitlines():
        record = json.loads(line) if line.startswith("{") else {}
        if record.get("msg") == "Extracted dependencies":
            return record["packageFiles"]
    pytest.fail("Renovate logged no extracted dependencies:\n" + cp.stdout[-4000:])


def deps(files: list[dict], path: str | None = None) -> list[dict]:
    return [d for f in files if path in (None, f["packageFile"]) for d in f["deps"]]


def test_renovate_finds_each_image_pin_as_the_table_holds_it(extracted):
    found = deps(extracted["regex"], "tasks/settings/table.py")
    assert {d["depName"]: d["currentValue"] for d in found} == image_tags()
    assert {(d["datasource"], d["versioning"]) for d in found} == {("docker", "docker")}


def test_renovate_finds_the_aws_provider_constraint_in_each_versions_file(extracted):
    constraints = {}
    for versions in (REPO / "terraform").rglob("versions.tf"):
        path = versions.relative_to(REPO).as_posix()
        constraints[path] = re.search(r'^\s*version\s*=\s*"([^"]+)"', versions.read_text(), re.M)[1]
    found = {f["packageFile"]: d["currentValue"] for f in extracted["terraform"] for d in f["deps"]
             if d.get("packageName") == "hashicorp/aws" and d.get("currentValue")}
    assert found == constraints


def test_renovate_finds_every_python_dependency(extracted):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    names = {re.match(r"[A-Za-z0-9._-]+", d)[0].lower() for d in wanted}
    found = {d["depName"].lower() for d in deps(extracted["pep621"]) if d.get("datasource") == "pypi"}
    assert found == names
