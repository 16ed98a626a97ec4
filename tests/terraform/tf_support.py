"""Helpers shared by the Terraform tests (fixtures live in conftest.py).

A uniquely named module on purpose: several test directories have a conftest.py, so test modules
must never `from conftest import ...`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tasks import REPO

TF_SRC = REPO / "terraform"
CHECKOV_SH = Path(__file__).resolve().parent / "checkov.sh"
MOTO_LAUNCHER = Path(__file__).resolve().parent / "moto_launcher.py"

REGION = "eu-central-1"
# moto's fake credentials: test code only, never in terraform/ or the docs.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}

AMI_PARAMETER = "/gitea-deploy-test/debian-13-amd64"  # moto has no /aws/service/debian parameters

# What moto cannot emulate, switched off for every apply of the root (test_tf_apply_moto.py's docstring).
MOTO_GAPS = {"enable_data_volume_snapshots": False, "enable_budget": False, "enable_ipv6": False}

# Lifts the state bucket's prevent_destroy in a temporary copy only (lifecycle arguments cannot be
# variables); production keeps it.
PROTECTED_BUCKET_TEST_OVERRIDE = """
resource "aws_s3_bucket" "protected" {
  lifecycle {
    prevent_destroy = false
  }
}
"""

# What providers.tf gives emulated AWS since PRE_MODULE_COMMIT's single attempt: one connection
# moto dropped mid-answer failed a whole apply (test_tf_policy checks the two agree).
EMULATED_MAX_RETRIES = 3
EMULATED_RETRY_OVERRIDE = f"""
provider "aws" {{
  max_retries = {EMULATED_MAX_RETRIES}
}}
"""

LOCAL_BACKEND_OVERRIDE = """
terraform {
  backend "local" {}
}
"""

# Where an offline provider mirror usually lives; a `find /` is the fallback.
MIRROR_CANDIDATES = (
    "/opt/tf-plugins",
    "/usr/share/terraform/plugins",
    "/usr/local/share/terraform/plugins",
    str(Path.home() / ".terraform.d/plugins"),
    str(Path.home() / ".local/share/terraform/plugins"),
)
PROVIDER_GLOB = "registry.terraform.io/hashicorp/aws/*/*/terraform-provider-aws*"


def mirror_root() -> tuple[Path | None, str]:
    override = os.environ.get("GITEA_DEPLOY_TF_MIRROR")
    candidates = [override] if override else list(MIRROR_CANDIDATES)
    for candidate in candidates:
        root = Path(candidate)
        if root.is_dir() and any(root.glob(PROVIDER_GLOB)):
            return root, ""
    if override:
        return None, f"GITEA_DEPLOY_TF_MIRROR={override} holds no registry.terraform.io/hashicorp/aws provider"
    try:
        found = subprocess.run(
            ["find", "/", "-xdev", "-path", "*registry.terraform.io/hashicorp/aws/*",
             "-name", "terraform-provider-aws*", "-not", "-path", "*/.terraform/*"],
            capture_output=True, text=True, timeout=120, check=False,
        ).stdout.split()
    except subprocess.TimeoutExpired:
        found = []
    for path in found:
        # <root>/registry.terraform.io/hashicorp/aws/<version>/<os_arch>/terraform-provider-aws_...
        return Path(path).parents[4], ""
    return None, ("no offline hashicorp/aws provider mirror found (looked in "
                  f"{', '.join(MIRROR_CANDIDATES)} and with find /): put hashicorp/aws 5.100.x in a filesystem "
                  "mirror (`terraform providers mirror DIR` on a machine with internet access) and set "
                  "GITEA_DEPLOY_TF_MIRROR to DIR, the directory holding registry.terraform.io "
                  "(terraform/README.md \"Tests\")")


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        tail = "\n".join((self.stdout + "\n" + self.stderr).strip().splitlines()[-60:])
        return f"terraform {' '.join(self.args)} -> exit {self.returncode} in {self.seconds:.0f}s\n{tail}"


@dataclass
class Job:
    """A terraform (or other) command running in the background; result() waits, bounded."""

    args: list[str]
    proc: subprocess.Popen
    out_path: Path
    timeout: float
    started: float = field(default_factory=time.monotonic)
    _result: Result | None = None

    def result(self) -> Result:
        if self._result is None:
            remaining = max(1.0, self.timeout - (time.monotonic() - self.started))
            try:
                self.proc.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                stop(self.proc)
            out = self.out_path.read_text(errors="replace")
            err_path = self.out_path.with_suffix(".err")
            err = err_path.read_text(errors="replace") if err_path.exists() else ""
            self._result = Result(self.args, self.proc.returncode, out, err, time.monotonic() - self.started)
            print(f"[background] {' '.join(self.args)[:80]} -> exit {self.proc.returncode} "
                  f"after {self._result.seconds:.1f}s", flush=True)
        return self._result


class Terraform:
    """terraform -chdir=<directory> ... with the test environment and a timeout."""

    def __init__(self, binary: str, directory: Path, env: dict[str, str]):
        self.binary = binary
        self.dir = directory
        self.env = env

    def run(self, *args: str, timeout: float = 300, check: bool = True, ok_codes: tuple[int, ...] = (0,)) -> Result:
        argv = [self.binary, f"-chdir={self.dir}", *args]
        started = time.monotonic()
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
            result = Result(list(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
        except subprocess.TimeoutExpired as exc:
            result = Result(list(args), -1, _text(exc.stdout), _text(exc.stderr) + f"\nTIMEOUT after {timeout}s",
                            time.monotonic() - started)
        # Durations show with `pytest -s` (and in the captured output of a failing test).
        print(f"[terraform] {self.dir.name}: {' '.join(args)[:80]} -> exit {result.returncode} in {result.seconds:.1f}s",
              flush=True)
        if check and result.returncode not in ok_codes:
            pytest.fail(result.describe(), pytrace=False)
        return result

    def start(self, *args: str, timeout: float = 300) -> Job:
        """Run in the background; Job.result() waits (bounded). stderr goes to <log>.err."""
        out_path = self.dir.parent / f".job-{self.dir.name}-{time.monotonic_ns()}.log"
        with open(out_path, "wb") as out, open(out_path.with_suffix(".err"), "wb") as err:
            proc = subprocess.Popen([self.binary, f"-chdir={self.dir}", *args], env=self.env,
                                    stdout=out, stderr=err, start_new_session=True)
        return Job(list(args), proc, out_path, timeout)

    def outputs(self) -> dict[str, Any]:
        return json.loads(self.run("output", "-json", "-no-color", timeout=120).stdout)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def stop(proc: subprocess.Popen, grace: float = 10) -> None:
    """Stop a process we started (its own session) and wait, bounded."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, 15)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=grace)


def copy_module(destination: Path) -> Path:
    """Copy terraform/ without local state, caches, lock files, or an operator's auto-loaded
    variable files (terraform.tfvars, *.auto.tfvars): the tests must see only the repository."""
    shutil.copytree(
        TF_SRC, destination,
        ignore=shutil.ignore_patterns(".terraform", "*.tfstate", "*.tfstate.*", ".terraform.lock.hcl",
                                      "*.tfplan", "backend.hcl", "*_override.tf", "override.tf",
                                      "terraform.tfvars", "terraform.tfvars.json", "*.auto.tfvars",
                                      "*.auto.tfvars.json"),
    )
    return destination


def export_tree(commit: str, path: str, destination: Path) -> str:
    """`git archive` REPO's <commit>:<path> into destination; "" when done, else why it cannot be."""
    if shutil.which("git") is None:
        return "git is not installed"
    known = subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True, text=True, timeout=30, check=False)
    if known.returncode != 0:
        return (f"commit {commit[:12]} is not in this checkout (a shallow clone or an export): "
                "`git fetch --unshallow` gives it")
    destination.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit, path],
                             capture_output=True, timeout=60, check=False)
    if archive.returncode != 0:
        return f"git archive {commit[:12]} {path} failed: {archive.stderr.decode(errors='replace')}"
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, timeout=60, check=True)
    return ""


def ssh_public_key(directory: Path) -> str:
    if shutil.which("ssh-keygen"):
        key = directory / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "moto-test", "-f", str(key)],
                       check=True, timeout=30)
        return (directory / "id_ed25519.pub").read_text().strip()
    return "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMotoMotoMotoMotoMotoMotoMotoMotoMotoMotoMoto moto-test"


def publish_ami_parameter(moto: Moto, env: dict[str, str] | None = None) -> None:
    """moto has no Debian AMI parameter: publish one of its images under our own (idempotent)."""
    ec2 = moto.client("ec2", env=env)
    image = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]}])["Images"][0]
    moto.client("ssm", env=env).put_parameter(Name=AMI_PARAMETER, Value=image["ImageId"], Type="String", Overwrite=True)


def moto_root_vars(moto: Moto, directory: Path, name: str, domain: str, **extra: Any) -> dict[str, Any]:
    """Variables for an apply of terraform/ against moto: everything a real one sets, moto's gaps off."""
    return {
        "region": REGION,
        "name": name,
        "gitea_domain": domain,
        "admin_cidrs": ["203.0.113.7/32", "2001:db8::/48"],
        "admin_ssh_public_key": ssh_public_key(directory),
        "ami_ssm_parameter": AMI_PARAMETER,
        "aws_endpoint_url": moto.url,
        "alert_email": "ops@moto.test",
        "enable_cloudtrail": True,
        "database": "container",
        "db_deletion_protection": False,
        **MOTO_GAPS,
        **extra,
    }


@dataclass
class Workspace:
    root: Terraform
    bootstrap: Terraform
    init_results: dict[str, Result]
    jobs: dict[str, Job]


@dataclass
class Moto:
    url: str
    proc: subprocess.Popen
    log: Path

    def client(self, service: str, region: str = REGION, env: dict[str, str] | None = None):
        """A boto3 client; `env` (AWS_* variables, e.g. from account_env) picks another account."""
        import boto3

        env = env or FAKE_AWS_ENV
        return boto3.session.Session(
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            region_name=region,
        ).client(service, endpoint_url=self.url)

    def account_env(self, account_id: str) -> dict[str, str]:
        """AWS_* credentials for another account of this moto: an assumed role's keys are that account's.

        moto keeps each account apart (resources, and lists like DescribeTrails, which moto answers with
        every trail of the account whatever names are asked for).
        """
        credentials = self.client("sts").assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/gitea-deploy-test", RoleSessionName="gitea-deploy-test",
            DurationSeconds=12 * 3600)["Credentials"]
        return {"AWS_ACCESS_KEY_ID": credentials["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                "AWS_SESSION_TOKEN": credentials["SessionToken"]}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class PreModuleStack:
    """terraform/ as it was before modules/private-bucket (PRE_MODULE_COMMIT), applying to moto."""

    root: Terraform | None
    bootstrap: Terraform | None
    var_file: Path | None
    bootstrap_var_file: Path | None
    jobs: dict[str, Job] = field(default_factory=dict)
    skip_reason: str = ""


def load_sources():
    """inventories/sources.py as a module (inventories/ is not a package; unique module name)."""
    name = "gitea_deploy_inventory_sources"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "inventories" / "sources.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
