"""Fixtures for the Terraform tests (marker `terraform`); helpers live in tf_support.py.

- `terraform_bin`, `tf_mirror`, `tf_env`: terraform on PATH, the offline hashicorp/aws mirror
  (what the tests need: terraform/README.md "Tests"), and an environment with our own CLI config
  in a temp dir.
  Missing terraform or mirror -> the tests skip with the reason (pytest -ra prints it).
- `workspace`: temp copies of terraform/ (root and bootstrap) initialised against the mirror
  with -backend=false, for validate and the provider schema.
- `moto_server`: moto on 127.0.0.1 with a free port, started and stopped here (bounded waits).
- `pre_module_stack`: terraform/ of PRE_MODULE_COMMIT (git archive) applying to that moto in the
  background, local state, for the moved-blocks test; test_tf_apply_moto.py's stack starts it early.
- `checkov_job`: checkov (own venv, tests/terraform/checkov.sh) started in the background.

Nothing here talks to anything but 127.0.0.1: the AWS provider's endpoints point at moto, the
AWS_* variables hold moto's fake credentials, and AWS config files are /dev/null.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from tf_support import (
    CHECKOV_SH,
    EMULATED_RETRY_OVERRIDE,
    FAKE_AWS_ENV,
    LOCAL_BACKEND_OVERRIDE,
    MOTO_LAUNCHER,
    REGION,
    REPO,
    TF_SRC,
    Job,
    Moto,
    PreModuleStack,
    Terraform,
    Workspace,
    copy_module,
    export_tree,
    free_port,
    mirror_root,
    moto_root_vars,
    publish_ami_parameter,
    stop,
)

# The last commit before terraform/modules/private-bucket. Its terraform/ is applied to moto and the
# current code must take that state over with moves only (test_tf_moved_moto.py).
PRE_MODULE_COMMIT = "a6413748ad9df02c60a93f86b5e1d3a972b24cbb"
# Beside test_tf_apply_moto.py's stack in the same moto server, but in an account of its own (two
# trails in one account break moto's DescribeTrails) and with other names (S3 names are global).
PRE_MODULE_ACCOUNT = "111122223333"
PRE_MODULE_NAME = "gitea-pre"
PRE_MODULE_STATE_BUCKET = "gitea-deploy-pre-tfstate"


@pytest.fixture(scope="session")
def terraform_bin() -> str:
    path = shutil.which("terraform")
    if path is None:
        pytest.skip("terraform is not on PATH: install Terraform >= 1.11 (HashiCorp's release or apt "
                    "repository; what the tests need: terraform/README.md \"Tests\")")
    return path




@pytest.fixture(scope="session")
def tf_mirror() -> Path:
    root, reason = mirror_root()
    if root is None:
        pytest.skip(reason)
    return root




@pytest.fixture(scope="session")
def tf_env(tmp_path_factory, terraform_bin, tf_mirror) -> dict[str, str]:
    """Environment for every terraform call: our CLI config (mirror only), fake AWS credentials."""
    base = tmp_path_factory.mktemp("tfcli")
    cache = base / "plugin-cache"
    cache.mkdir()
    cli_config = base / "terraform.rc"
    cli_config.write_text(
        f'''plugin_cache_dir = "{cache}"
# The lock files of these temp copies are throwaway: let the cache link the 700 MB provider
# instead of copying it into every working directory.
plugin_cache_may_break_dependency_lock_file = true

provider_installation {{
  filesystem_mirror {{
    path    = "{tf_mirror}"
    include = ["registry.terraform.io/*/*"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*"]
  }}
}}
'''
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(FAKE_AWS_ENV)
    env.update({
        "TF_CLI_CONFIG_FILE": str(cli_config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        # The aws provider spends most of each start-up in Go's garbage collector (schemas of 1500
        # resources): a lazier GC cuts its CPU by about a third for ~0.5 GB per provider process.
        "GOGC": "400",
    })
    return env




@pytest.fixture(scope="session")
def workspace(tmp_path_factory, terraform_bin, tf_env) -> Workspace:
    """terraform/ copied to a temp dir and initialised against the mirror (local state, no AWS).

    validate (both roots) and the provider schema start at once in the background: they are CPU
    work that overlaps the moto apply's waiting when the whole module runs.
    """
    base = copy_module(tmp_path_factory.mktemp("static") / "terraform")
    (base / "zz_local_backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    root = Terraform(terraform_bin, base, tf_env)
    bootstrap = Terraform(terraform_bin, base / "bootstrap", tf_env)
    # Sequential: both would fill the plugin cache at once.
    results = {
        "root": root.run("init", "-input=false", "-no-color", timeout=300, check=False),
        "bootstrap": bootstrap.run("init", "-input=false", "-no-color", timeout=300, check=False),
    }
    jobs = {}
    if all(r.returncode == 0 for r in results.values()):
        jobs = {
            "validate-root": root.start("validate", "-no-color", timeout=300),
            "validate-bootstrap": bootstrap.start("validate", "-no-color", timeout=300),
            "schema": root.start("providers", "schema", "-json", timeout=300),
        }
    workspace = Workspace(root, bootstrap, results, jobs)
    yield workspace
    for job in jobs.values():
        stop(job.proc)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    missing = [m for m in ("moto", "flask", "flask_cors", "boto3") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"moto[server] is not installed in this venv (missing {', '.join(missing)}): "
                    "pip install 'moto[server]>=5.1,<6' (pyproject's test extra)")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = dict(os.environ)
    env.update(FAKE_AWS_ENV)
    # AWS-managed IAM policies (AmazonSSMManagedInstanceCore, AWSDataLifecycleManagerServiceRole).
    env["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, str(MOTO_LAUNCHER), "-H", "127.0.0.1", "-p", str(port)],
                                    env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError as exc:
                last_error = str(exc)
            time.sleep(0.3)
        else:
            stop(proc)
            continue
        if proc.poll() is None:
            server = Moto(url, proc, log)
            try:
                yield server
            finally:
                stop(proc)
            return
    pytest.fail(f"moto server did not answer within 30 s (3 attempts): {last_error}\n"
                f"{log.read_text(errors='replace')[-3000:]}", pytrace=False)




@pytest.fixture(scope="session")
def pre_module_stack(tmp_path_factory, terraform_bin, tf_env, moto_server) -> PreModuleStack:
    """Apply terraform/ and terraform/bootstrap/ as they were before the private-bucket module.

    Both applies run in the background (they overlap test_tf_apply_moto.py's); the moved tests wait.
    Never destroyed: the session's moto server, and all it holds, goes at the end.
    Without the commit (no git, a shallow clone) the moved tests skip with the reason.
    """
    base = tmp_path_factory.mktemp("pre-module")
    reason = export_tree(PRE_MODULE_COMMIT, "terraform", base)
    if reason:
        return PreModuleStack(None, None, None, None, skip_reason=reason)
    account = moto_server.account_env(PRE_MODULE_ACCOUNT)
    env = {**tf_env, **account, "AWS_ENDPOINT_URL": moto_server.url}  # endpoint: backstop, as in test_tf_apply_moto.py
    root = Terraform(terraform_bin, base / "terraform", env)
    bootstrap = Terraform(terraform_bin, base / "terraform" / "bootstrap", env)
    (root.dir / "zz_local_backend_override.tf").write_text(LOCAL_BACKEND_OVERRIDE)
    for tf in (root, bootstrap):  # the pinned code's single attempt, raised as the current code does
        (tf.dir / "zz_emulated_retry_override.tf").write_text(EMULATED_RETRY_OVERRIDE)
    publish_ami_parameter(moto_server, account)
    var_file = base / "pre-module.tfvars.json"
    var_file.write_text(json.dumps(moto_root_vars(moto_server, base, PRE_MODULE_NAME, "git.pre.test"), indent=2))
    bootstrap_var_file = base / "pre-module-bootstrap.tfvars.json"
    bootstrap_var_file.write_text(json.dumps({
        "region": REGION, "state_bucket_name": PRE_MODULE_STATE_BUCKET, "aws_endpoint_url": moto_server.url,
    }))
    stack = PreModuleStack(root, bootstrap, var_file, bootstrap_var_file)
    for tf in (root, bootstrap):  # one after the other: both would fill the plugin cache at once
        tf.run("init", "-input=false", "-no-color", timeout=300)
    for name, tf, variables in (("root", root, var_file), ("bootstrap", bootstrap, bootstrap_var_file)):
        stack.jobs[name] = tf.start("apply", "-auto-approve", "-input=false", "-no-color",
                                    f"-var-file={variables}", timeout=600)
    yield stack
    for job in stack.jobs.values():
        stop(job.proc)


@pytest.fixture(scope="session")
def checkov_job(tmp_path_factory) -> Job:
    """Start checkov on terraform/ in the background; the checkov test waits for it."""
    out_dir = tmp_path_factory.mktemp("checkov")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    log = out_dir / "checkov.log"
    with open(log, "wb") as out:
        # checkov.sh creates .venv-checkov first if it is missing (pip install, a minute or two).
        proc = subprocess.Popen(["sh", str(CHECKOV_SH), "-d", str(TF_SRC), "--framework", "terraform",
                                 "--skip-download", "--compact", "-o", "json", "--output-file-path", str(out_dir)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Job(["checkov"], proc, log, timeout=900)
