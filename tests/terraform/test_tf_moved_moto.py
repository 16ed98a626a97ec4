"""The private-bucket module's `moved` blocks carry an applied state over: moves only, then no drift.

conftest.py's `pre_module_stack` applied terraform/ and terraform/bootstrap/ as they were at
PRE_MODULE_COMMIT (the buckets written out three times) to the session's moto, in the background
while test_tf_apply_moto.py ran. Here the current code takes over those local states:

  1. `plan -refresh=false -json -out`: every planned change is a pure move, and exactly the moves
     below; nothing to add, change or destroy. Without the moved blocks it plans the buckets'
     destroy and re-creation (and the state bucket's plan fails on prevent_destroy).
  2. apply that plan (it only rewrites the state: a pending move is a change to Terraform, so
     `plan -detailed-exitcode` is 0 only once the moves are recorded)
  3. `plan -detailed-exitcode` (with refresh) = 0: the buckets in moto are what the module wants.

PRE_MODULE_COMMIT is pinned: when terraform/ later adds resources, step 1 lists their creation
and the expected moves below still say what this migration must do. LATER names those later
changes, each with its action; none of them may touch a bucket.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import pytest
from tf_support import LOCAL_BACKEND_OVERRIDE, Result, Terraform, copy_module

pytestmark = pytest.mark.terraform

TIMEOUT = 420

COMPANIONS = ("ownership_controls", "public_access_block", "versioning", "server_side_encryption_configuration",
              "lifecycle_configuration", "policy")


def _moves(old: str, module: str, bucket: str) -> dict[str, str]:
    """previous address -> new address for one bucket and its six companions."""
    moves = {f"aws_s3_bucket.{old}": f"{module}.aws_s3_bucket.{bucket}[0]"}
    moves.update({f"aws_s3_bucket_{kind}.{old}": f"{module}.aws_s3_bucket_{kind}.this" for kind in COMPANIONS})
    return moves


EXPECTED_MOVES = {
    "root": {**_moves("backups", "module.backups_bucket", "this"),
             **{f"{k}[0]": v for k, v in _moves("cloudtrail", "module.cloudtrail_bucket[0]", "this").items()},
             "aws_cloudwatch_log_group.host": 'aws_cloudwatch_log_group.host["host"]'},  # one group per concern
    "bootstrap": _moves("state", "module.state_bucket", "protected"),
}


# What the code changed after PRE_MODULE_COMMIT, planned beside the moves (address -> action).
LATER = {
    "root": {"aws_cloudwatch_metric_alarm.heartbeat": "create",  # the heartbeat's alarm (alerts.tf)
             "aws_instance.gitea": "update",  # its heartbeat and alerts-topic discovery tags, in place
             "aws_iam_role_policy.host": "update",  # sns:Publish on the alerts topic, the new log groups; in place
             # one log group per concern with a key of their own (logs.tf): the host's gets the key in place
             'aws_cloudwatch_log_group.host["host"]': "update",
             **{f'aws_cloudwatch_log_group.host["{c}"]': "create" for c in ("gitea", "postgres", "nginx", "backup")},
             "aws_kms_key.logs": "create", "aws_kms_alias.logs": "create",
             "data.aws_iam_policy_document.host": "read"},  # names the new groups' ARNs, known at apply
    "bootstrap": {},
}


def _later_counts(root: str) -> dict[str, int]:
    actions = list(LATER[root].values())
    return {"add": actions.count("create"), "change": actions.count("update")}


@dataclass
class Migration:
    tf: Terraform
    moves_plan: Result
    applied: Result | None = None
    drift: Result | None = None


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _not_moves(plan: Result, root: str) -> list[str]:
    """Planned changes other than pure moves and LATER's, and a summary that counts more."""
    messages = _json_lines(plan.stdout)
    other = [f"{m['change']['resource']['addr']}: {m['change']['action']}" for m in messages
             if m.get("type") == "planned_change" and m["change"]["action"] != "move"
             and LATER[root].get(m["change"]["resource"]["addr"]) != m["change"]["action"]]
    summary = [m["changes"] for m in messages if m.get("type") == "change_summary"]
    if summary != [{**_later_counts(root), "import": 0, "remove": 0, "operation": "plan"}]:
        other.append(f"change summary: {summary}")
    other += [f"{m['@message']}: {m.get('diagnostic', {}).get('detail', '')}" for m in messages
              if m.get("@level") == "error"]
    return other


def _moved(plan: Result) -> dict[str, str]:
    return {m["change"]["previous_resource"]["addr"]: m["change"]["resource"]["addr"]
            for m in _json_lines(plan.stdout)
            if m.get("type") == "planned_change" and "previous_resource" in m["change"]}  # a move, maybe with an update


@pytest.fixture(scope="module")
def migrations(pre_module_stack, tmp_path_factory, terraform_bin) -> dict[str, Migration]:
    pre = pre_module_stack
    if pre.skip_reason:
        pytest.skip(f"no pre-module state to migrate: {pre.skip_reason}")
    for name, job in pre.jobs.items():
        applied = job.result()
        if applied.returncode != 0:
            pytest.fail(f"the pre-module {name} did not apply:\n{applied.describe()}", pytrace=False)

    # The current code, in a new copy, with the states the old code left.
    new_root = copy_module(tmp_path_factory.mktemp("migrated") / "terraform")
    (new_root / "zz_local_backend_override.tf").write_text(LOCAL_BACKEND_OVERRIDE)
    shutil.copy(pre.root.dir / "terraform.tfstate", new_root / "terraform.tfstate")
    shutil.copy(pre.bootstrap.dir / "terraform.tfstate", new_root / "bootstrap" / "terraform.tfstate")
    roots = {"root": (Terraform(terraform_bin, new_root, pre.root.env), pre.var_file),
             "bootstrap": (Terraform(terraform_bin, new_root / "bootstrap", pre.bootstrap.env), pre.bootstrap_var_file)}
    for tf, _ in roots.values():  # one after the other: the plugin cache
        tf.run("init", "-input=false", "-no-color", timeout=TIMEOUT)

    def in_parallel(names, args_for):
        """Start one terraform command per root (args_for(name) -> argv), then wait for all."""
        jobs = {name: roots[name][0].start(*args_for(name), timeout=TIMEOUT) for name in names}
        return {name: job.result() for name, job in jobs.items()}

    plans = in_parallel(roots, lambda name: ("plan", "-refresh=false", "-input=false", "-no-color", "-json",
                                             f"-var-file={roots[name][1]}", "-out=moves.tfplan"))
    migrations = {name: Migration(roots[name][0], plan) for name, plan in plans.items()}
    # Only a plan of moves alone is applied: anything else would really rebuild the buckets.
    movable = [name for name, m in migrations.items()
               if m.moves_plan.returncode == 0 and not _not_moves(m.moves_plan, name)]
    for name, result in in_parallel(movable, lambda name: ("apply", "-input=false", "-no-color", "moves.tfplan")).items():
        migrations[name].applied = result
    applied = [name for name in movable if migrations[name].applied.returncode == 0]
    for name, result in in_parallel(applied, lambda name: ("plan", "-input=false", "-no-color", "-detailed-exitcode",
                                                           f"-var-file={roots[name][1]}")).items():
        migrations[name].drift = result
    return migrations


@pytest.mark.parametrize("root", ["root", "bootstrap"])
def test_the_new_code_plans_only_moves(migrations, root):
    plan = migrations[root].moves_plan
    assert plan.returncode == 0 and not _not_moves(plan, root), (
        f"{root}: the pre-module state does not carry over by moves alone:\n" + "\n".join(_not_moves(plan, root))
        + f"\n\n{plan.describe()}")
    assert _moved(plan) == EXPECTED_MOVES[root]


@pytest.mark.parametrize("root", ["root", "bootstrap"])
def test_after_the_moves_the_plan_is_empty(migrations, root):
    migration = migrations[root]
    assert migration.applied is not None, f"{root}: the moves were not applied (the plan had other changes)"
    assert migration.applied.returncode == 0, migration.applied.describe()
    later = _later_counts(root)
    assert f"{later['add']} added, {later['change']} changed, 0 destroyed" in migration.applied.stdout, \
        migration.applied.describe()
    assert migration.drift.returncode == 0, f"{root}: drift after the moves:\n{migration.drift.describe()}"
