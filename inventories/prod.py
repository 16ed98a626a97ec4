"""Production hosts, found where Terraform put them. Run: pyinfra inventories/prod.py deploy.py

By default the hosts and their data come from `terraform -chdir=terraform output -json`
(its `pyinfra_inventory` output). With GITEA_DEPLOY_SOURCE=ec2 they are discovered instead as
running EC2 instances tagged `gitea-deploy:name=<GITEA_DEPLOY_NAME, default gitea>` in
GITEA_DEPLOY_REGION (default: AWS_REGION), for a control machine without the Terraform state.
Values only the operator knows (e-mails) go in group_data/prod.py. How to connect (the `admin`
user with sudo) is the same for every environment: tasks/settings/table.py, `connection` rows.

Two more environment variables, for a control machine without Terraform and for the lab:
  GITEA_DEPLOY_TERRAFORM_OUTPUT=FILE  a recorded `terraform output -json` instead of running terraform
  GITEA_DEPLOY_OVERRIDES=FILE         a JSON object laid over every host: only the keys an environment
                                      may differ in (inventories/sources.py ENVIRONMENT_KEYS: addresses,
                                      SSH keys, ACME directory and CA, images, emulated AWS)
"""

import os

from inventories import sources
from inventories.precedence import checked_hosts
from tasks.settings import SettingsError

_source = os.environ.get("GITEA_DEPLOY_SOURCE", "terraform")

try:
    if _source == "terraform":
        _hosts = sources.from_terraform(chdir=os.environ.get("GITEA_DEPLOY_TERRAFORM_DIR", "terraform"),
                                        outputs_file=os.environ.get("GITEA_DEPLOY_TERRAFORM_OUTPUT") or None)
    elif _source == "ec2":
        _hosts = sources.from_ec2_tags(
            sources.TAG_NAME, os.environ.get("GITEA_DEPLOY_NAME", "gitea"),
            region=os.environ.get("GITEA_DEPLOY_REGION") or os.environ.get("AWS_REGION"),
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        )
    else:
        raise SettingsError(f"GITEA_DEPLOY_SOURCE={_source!r}: use terraform (default) or ec2")
    _hosts = sources.with_overrides(_hosts, sources.overrides_file(os.environ.get("GITEA_DEPLOY_OVERRIDES")))
except LookupError as error:
    raise SettingsError(str(error)) from None

prod = checked_hosts(_hosts, group="prod")
