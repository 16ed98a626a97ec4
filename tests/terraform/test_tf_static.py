"""terraform fmt, init against the offline mirror, validate (root module and bootstrap)."""

from __future__ import annotations

import re
import subprocess

import pytest
from tf_support import TF_SRC

pytestmark = pytest.mark.terraform


def test_fmt(terraform_bin):
    proc = subprocess.run([terraform_bin, "fmt", "-check", "-recursive", "-diff", "-no-color", str(TF_SRC)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"run `terraform fmt -recursive terraform`:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("module", ["root", "bootstrap"])
def test_init_uses_the_offline_provider(workspace, module):
    result = workspace.init_results[module]
    assert result.returncode == 0, result.describe()
    tf = workspace.root if module == "root" else workspace.bootstrap
    lock = (tf.dir / ".terraform.lock.hcl").read_text()
    # The constraint in versions.tf must admit the mirrored 5.100.0 (and nothing was downloaded).
    assert re.search(r'provider "registry.terraform.io/hashicorp/aws" \{\s*version\s*=\s*"5\.100\.0"', lock), lock


@pytest.mark.parametrize("module", ["root", "bootstrap"])
def test_validate(workspace, module):
    if workspace.init_results[module].returncode != 0:
        pytest.fail(f"init failed:\n{workspace.init_results[module].describe()}", pytrace=False)
    result = workspace.jobs[f"validate-{module}"].result()
    assert result.returncode == 0, result.describe()
    assert "The configuration is valid" in result.stdout


# Split so this file does not match itself.
OUTSIDE_THE_REPOSITORY = re.compile("|".join([r"\.\./" + "shared", "shared/" + "LAB" + r"\.md"]))


def test_nothing_points_outside_the_repository():
    """A fresh clone has nothing beside it: messages and docs name what is needed, inside the repository."""
    here = TF_SRC.parent / "tests" / "terraform"
    files = [*TF_SRC.rglob("*.tf"), *TF_SRC.rglob("*.md"), *TF_SRC.rglob("*.tftpl"), *TF_SRC.rglob("*.tfvars"),
             *here.glob("*.py"), *here.glob("*.sh"), TF_SRC.parent / "docs" / "runbooks" / "aws.md"]
    hits = [f"{path.relative_to(TF_SRC.parent)}:{number}: {line.strip()}"
            for path in files if ".terraform" not in path.parts
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
            if OUTSIDE_THE_REPOSITORY.search(line)]
    assert not hits, "references to paths outside the repository:\n" + "\n".join(hits)
