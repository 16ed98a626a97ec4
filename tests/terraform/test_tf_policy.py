"""Policy tests: invariants of terraform/ that checkov does not know, read with python-hcl2.

- the admin SSH port is never open to 0.0.0.0/0 or ::/0
- every taggable resource is tagged (provider default_tags + a Name), tags merged in one place
- every variable is typed and described; every non-bool variable is validated
- IMDSv2 on every instance, encryption on every volume and database, buckets private/TLS-only
- IAM: no `*` resource where an ARN exists (in a KMS key policy `*` is the key), no `*` action,
  `*` principals only in Deny
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions
from tf_support import EMULATED_MAX_RETRIES, TF_SRC

pytestmark = pytest.mark.terraform

OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
ROOTS = {"root": TF_SRC, "bootstrap": TF_SRC / "bootstrap"}
# Local modules: their resources, statements and variables are checked like the roots'.
LOCAL_MODULES = {f"modules/{path.name}": path for path in sorted((TF_SRC / "modules").iterdir()) if path.is_dir()}
BUCKET_MODULE = "modules/private-bucket"

# Actions AWS offers no resource-level permission for: `*` is the only resource they accept.
NO_RESOURCE_LEVEL_ACTIONS = {"cloudwatch:PutMetricData"}
WORLD = ("0.0.0.0/0", "::/0")


def _load(directory: Path) -> dict[str, list]:
    merged: dict[str, list] = {}
    for path in sorted(directory.glob("*.tf")):
        with open(path) as f:
            for key, value in hcl2.load(f, serialization_options=OPTIONS).items():
                merged.setdefault(key, []).extend(value)
    return merged


MODULES = {name: _load(path) for name, path in {**ROOTS, **LOCAL_MODULES}.items()}


def _blocks(module: dict, kind: str):
    """(type, name, body) for every resource/data block."""
    for block in module.get(kind, []):
        for block_type, named in block.items():
            for name, body in named.items():
                yield block_type, name, body


def _resources(kind: str = "resource"):
    for root, module in MODULES.items():
        for block_type, name, body in _blocks(module, kind):
            yield root, block_type, name, body


def _first(body: dict, key: str) -> dict:
    value = body.get(key) or [{}]
    return value[0] if isinstance(value, list) else value


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


################################################################################
# variables
################################################################################

def _variables():
    for root, module in MODULES.items():
        for block in module.get("variable", []):
            for name, body in block.items():
                yield root, name, body


def test_every_variable_is_typed_and_described():
    bad = [f"{root}: {name}" for root, name, body in _variables()
           if "type" not in body or len(str(body.get("description", "")).strip()) < 15]
    assert not bad, f"variables without type or a real description: {bad}"


def test_every_non_bool_variable_is_validated():
    bad = [f"{root}: {name}" for root, name, body in _variables()
           if body.get("type") not in ("bool", "${bool}") and not body.get("validation")]
    assert not bad, f"variables a wrong value of which would only fail at apply time: {bad}"


def test_admin_cidrs_has_no_default():
    admin = [body for root, name, body in _variables() if root == "root" and name == "admin_cidrs"]
    assert admin and "default" not in admin[0], "admin_cidrs must be required (no default, never 0.0.0.0/0)"


################################################################################
# the admin port
################################################################################

def test_admin_port_is_never_open_to_the_world():
    rule_types = {"aws_vpc_security_group_ingress_rule"}
    # Forms that would bypass this check are not used at all.
    assert not [n for _, t, n, _ in _resources() if t == "aws_security_group_rule"], "use aws_vpc_security_group_*_rule"
    assert not [n for _, t, n, b in _resources() if t == "aws_security_group" and ("ingress" in b or "egress" in b)], \
        "inline ingress/egress blocks in aws_security_group"

    locals_ = {k: v for _, module in MODULES.items() for block in module.get("locals", []) for k, v in block.items()}
    assert "admin_ssh_port" not in json.dumps(locals_["public_tcp_ports"]), "admin port in the public ports"

    checked = 0
    for _, rule_type, name, body in _resources():
        if rule_type not in rule_types:
            continue
        text = json.dumps(body)
        if "admin_ssh_port" in text:
            checked += 1
            assert body["for_each"] == "${toset(var.admin_cidrs)}", f"{name}: admin rule not driven by admin_cidrs"
            assert not any(w in text for w in WORLD), f"{name}: admin rule mentions {WORLD}"
            for key in ("cidr_ipv4", "cidr_ipv6"):
                assert "each.value" in body[key] and "var." not in body[key].replace("var.admin_cidrs", ""), name
        elif "referenced_security_group_id" in body:
            continue
        else:
            # Everything else open to anyone must take its port from local.public_tcp_ports.
            assert body.get("for_each") == "${local.public_ingress}", f"{name}: ingress rule outside the public ports"
    assert checked == 1, f"expected exactly one admin-port rule, found {checked}"


################################################################################
# tags
################################################################################

@pytest.fixture(scope="module")
def taggable_types(workspace) -> set[str]:
    """Resource types whose schema (hashicorp/aws as initialised from the mirror) has `tags`."""
    if not workspace.jobs:
        pytest.fail(f"terraform init failed:\n{workspace.init_results['root'].describe()}", pytrace=False)
    result = workspace.jobs["schema"].result()
    assert result.returncode == 0, result.describe()
    schemas = json.loads(result.stdout)["provider_schemas"]
    aws = next(v for k, v in schemas.items() if k.endswith("hashicorp/aws"))
    return {name for name, schema in aws["resource_schemas"].items() if "tags" in schema["block"].get("attributes", {})}


def test_every_taggable_resource_has_a_name_tag(taggable_types):
    resources = list(_resources())
    assert {t for _, t, _, _ in resources} & taggable_types, "no taggable resources found: schema mismatch?"
    missing = [f"{root}: {t}.{n}" for root, t, n, body in resources
               if t in taggable_types and "Name" not in (body.get("tags") or {})]
    assert not missing, f"taggable resources without tags = {{ Name = ... }}: {missing}"


def test_default_tags_on_every_provider_and_merged_once():
    for root in ROOTS:
        module = MODULES[root]
        providers = [body for block in module.get("provider", []) for name, body in block.items() if name == "aws"]
        assert providers, f"{root}: no aws provider block"
        for body in providers:
            assert _first(body, "default_tags").get("tags") == "${local.tags}", f"{root}: default_tags must be local.tags"
        locals_ = {k: v for block in module.get("locals", []) for k, v in block.items()}
        assert locals_["tags"].startswith("${merge(var.tags,"), f"{root}: local.tags must merge var.tags"
        for key in ("Project", "ManagedBy"):
            assert key in locals_["tags"], f"{root}: local.tags lacks {key}"
        # var.tags is read in exactly one place: local.tags.
        uses = sum(p.read_text().count("var.tags") for p in ROOTS[root].glob("*.tf") if p.name != "variables.tf")
        assert uses == 1, f"{root}: var.tags used {uses} times outside variables.tf (merge tags in one place)"


def test_emulated_aws_gets_retries_and_production_the_provider_default():
    """One attempt made a connection moto dropped mid-answer fail a whole apply (CI, stop 20)."""
    for root in ROOTS:
        providers = [body for block in MODULES[root].get("provider", []) for name, body in block.items()
                     if name == "aws"]
        assert [body.get("max_retries") for body in providers] == \
            [f"${{local.emulated ? {EMULATED_MAX_RETRIES} : null}}"], f"{root}: max_retries"


################################################################################
# instances, volumes, databases, buckets
################################################################################

def test_instances_require_imdsv2_and_encrypt_every_volume():
    instances = [(n, b) for _, t, n, b in _resources() if t == "aws_instance"]
    assert instances
    for name, body in instances:
        metadata = _first(body, "metadata_options")
        assert metadata.get("http_tokens") == "required", f"aws_instance.{name}: IMDSv2 not required"
        assert metadata.get("http_endpoint", "enabled") == "enabled"
        assert _first(body, "root_block_device").get("encrypted") is True, f"aws_instance.{name}: root volume"
        for device in _as_list(body.get("ebs_block_device")):
            assert device.get("encrypted") is True, f"aws_instance.{name}: ebs_block_device"
    for _, t, name, body in _resources():
        if t == "aws_ebs_volume":
            assert body.get("encrypted") is True, f"aws_ebs_volume.{name} not encrypted"
        if t == "aws_launch_template":
            assert _first(body, "metadata_options").get("http_tokens") == "required", f"{t}.{name}"
        if t == "aws_db_instance":
            assert body.get("storage_encrypted") is True and body.get("publicly_accessible") is False, f"{t}.{name}"


def test_every_bucket_is_the_private_bucket_module():
    """One definition of a private bucket: no aws_s3_bucket* resource outside the module."""
    outside = [f"{root}: {t}.{n}" for root, t, n, _ in _resources() if t.startswith("aws_s3_bucket") and root != BUCKET_MODULE]
    assert not outside, f"buckets (or bucket settings) outside {BUCKET_MODULE}: {outside}"
    calls = {root: sorted(name for block in MODULES[root].get("module", []) for name, body in block.items()
                          if body["source"].endswith(BUCKET_MODULE)) for root in ROOTS}
    assert calls == {"root": ["backups_bucket", "cloudtrail_bucket"], "bootstrap": ["state_bucket"]}, calls


def test_the_bucket_module_is_private_encrypted_versioned_and_tls_only():
    resources = {(t, n): b for r, t, n, b in _resources() if r == BUCKET_MODULE}
    assert sorted(n for t, n in resources if t == "aws_s3_bucket") == ["protected", "this"]
    locals_ = {k: v for block in MODULES[BUCKET_MODULE]["locals"] for k, v in block.items()}
    assert locals_["bucket"] == "${one(concat(aws_s3_bucket.this, aws_s3_bucket.protected))}"

    def companion(kind):
        found = [b for (t, _), b in resources.items() if t == kind]
        assert len(found) == 1 and found[0].get("bucket") == (
            "${var.prevent_destroy ? aws_s3_bucket.protected[0].id : aws_s3_bucket.this[0].id}"), f"{kind}: {found}"
        return found[0]

    block = companion("aws_s3_bucket_public_access_block")
    assert all(block.get(k) is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls",
                                               "restrict_public_buckets")), block
    assert _first(companion("aws_s3_bucket_ownership_controls"), "rule")["object_ownership"] == "BucketOwnerEnforced"
    assert _first(companion("aws_s3_bucket_versioning"), "versioning_configuration")["status"] == "Enabled"
    encryption = _first(_first(companion("aws_s3_bucket_server_side_encryption_configuration"), "rule"),
                        "apply_server_side_encryption_by_default")
    assert "AES256" in encryption["sse_algorithm"] and "aws:kms" in encryption["sse_algorithm"], encryption
    assert companion("aws_s3_bucket_lifecycle_configuration").get("dynamic"), "lifecycle rules from lifecycle_rules"
    assert companion("aws_s3_bucket_policy")["policy"] == "${data.aws_iam_policy_document.this.json}"

    # The plain-HTTP deny is unconditional (the first map of deny_unless), to every principal.
    assert locals_["deny_unless"].startswith('${merge({DenyInsecureTransport = {test = "Bool", '
                                             'variable = "aws:SecureTransport", values = ["false"]}},'), \
        locals_["deny_unless"]
    document = next(b for _, t, n, b in _resources("data") if t == "aws_iam_policy_document" and n == "this")
    dynamic = document["dynamic"][0]["statement"]
    assert dynamic["for_each"] == "${local.deny_unless}"
    statement = _first(dynamic, "content")
    assert statement["effect"] == "Deny" and statement["actions"] == ["s3:*"], statement
    assert _first(statement, "principals")["identifiers"] == ["*"], statement


################################################################################
# IAM
################################################################################

def _statements():
    """(where, document name, statement) for every statement of every policy document."""
    for root, _, name, body in _resources("data"):
        if _ == "aws_iam_policy_document":
            for statement in _as_list(body.get("statement")):
                yield f"{root}: {name}/{statement.get('sid', '?')}", name, statement
            for dynamic in _as_list(body.get("dynamic")):
                for block in _as_list(dynamic.get("statement")):
                    for content in _as_list(block.get("content")):
                        yield f"{root}: {name}/{content.get('sid', '?')} (dynamic)", name, content


def _key_policy_documents() -> set[str]:
    """Documents that are a KMS key's policy: there `*` is the key itself, not every resource."""
    found = set()
    for _, t, _, body in _resources():
        if t == "aws_kms_key" and "policy" in body:
            found.update(re.findall(r"data\.aws_iam_policy_document\.(\w+)\.json", body["policy"]))
    return found


def _listed(value) -> list[str]:
    items = _as_list(value)
    return [str(i) for i in items]


def test_iam_statements_name_their_resources():
    checked = 0
    key_policies = _key_policy_documents()
    assert key_policies, "no KMS key policy found: the key-policy rule below checks nothing"
    for where, document, statement in _statements():
        checked += 1
        effect = statement.get("effect", "Allow")
        actions = _listed(statement.get("actions"))
        resources = _listed(statement.get("resources"))
        principals = [p for block in _as_list(statement.get("principals")) for p in _listed(block.get("identifiers"))]
        assert "not_actions" not in statement, f"{where}: not_actions"
        if effect == "Deny":
            continue
        assert "not_resources" not in statement, f"{where}: Allow with not_resources"
        assert not [a for a in actions if a == "*" or a.endswith(":*")], f"{where}: wildcard action {actions}"
        assert "*" not in principals, f"{where}: Allow to every principal"
        if actions == ["sts:AssumeRole"]:
            assert principals and not resources, f"{where}: trust policy shape"
            continue
        assert resources, f"{where}: no resources"
        if document in key_policies:
            assert resources == ["*"] and all(a.startswith("kms:") for a in actions), f"{where}: key policy shape"
            assert principals and "*" not in principals, f"{where}: a key policy names who may use the key"
            services = [b for b in _as_list(statement.get("principals")) if b.get("type") == "Service"]
            assert not services or statement.get("condition"), f"{where}: a service may use the key for anything"
            continue
        if "*" in resources:
            extra = set(actions) - NO_RESOURCE_LEVEL_ACTIONS
            assert not extra, f"{where}: `*` resource for actions that accept an ARN: {sorted(extra)}"
            assert statement.get("condition"), f"{where}: `*` resource without a condition"
    assert checked > 10


def test_policies_come_from_policy_documents():
    """No jsonencode() or heredoc policies: every policy passes through the checks above."""
    for root, t, name, body in _resources():
        for key in ("policy", "assume_role_policy"):
            if key in body:
                assert re.fullmatch(r"\$\{data\.aws_iam_policy_document\.\w+(\[0\])?\.json\}", body[key]), \
                    f"{root}: {t}.{name}.{key} = {body[key]}"


def test_host_cannot_erase_backup_history():
    host = [b for _, t, n, b in _resources("data") if t == "aws_iam_policy_document" and n == "host"][0]
    statements = _as_list(host["statement"])
    allowed = {a for s in statements if s.get("effect", "Allow") == "Allow" for a in _listed(s.get("actions"))}
    denied = {a for s in statements if s.get("effect") == "Deny" for a in _listed(s.get("actions"))}
    assert not {a for a in allowed if a.startswith("s3:") and ("Version" in a or a.startswith("s3:Put") and "Bucket" in a)}
    assert {"s3:DeleteObjectVersion", "s3:PutBucketVersioning", "s3:PutLifecycleConfiguration"} <= denied


def test_user_data_template_gets_no_secret():
    text = (TF_SRC / "instance.tf").read_text()
    names = set(re.findall(r"^\s+(\w+)\s*=", text[text.index("templatefile("):text.index("resource ")], re.M))
    assert names <= {"admin_ssh_port", "first_boot_script", "data_volume_id", "data_root", "data_label"}, names


def test_readme_documents_every_input_and_output():
    """The roots' inputs and outputs in terraform/README.md, a local module's in its own README.md."""
    missing = []
    for root, module in MODULES.items():
        readme_path = TF_SRC / "README.md" if root in ROOTS else LOCAL_MODULES[root] / "README.md"
        readme = readme_path.read_text() if readme_path.exists() else ""
        for kind in ("variable", "output"):
            for block in module.get(kind, []):
                for name in block:
                    if f"| `{name}` |" not in readme:
                        missing.append(f"{root} {kind} {name} ({readme_path.relative_to(TF_SRC)})")
    assert not missing, f"inputs/outputs tables lack: {missing}"
