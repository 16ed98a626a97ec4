"""The lab's operator values: what an operator puts in group_data/prod.py for production, set here so
the lab proves them end to end (tests/host/test_gitea.py reads them back out of Gitea's app.ini).

An app.ini option through gitea_config (with `$`, `#` and `:` that must arrive exactly) and one
secret the deploy generates once and Gitea reads through __FILE (docs/runbooks/configure.md).
"""

from lab.environment import grafana_runs  # a function: neither pyinfra nor precedence.py takes it as data

gitea_config = {
    "ui.meta": {"AUTHOR": "gitea-deploy lab: $5 #1"},
    "camo": {"HMAC_KEY__FILE": "camo_hmac"},
}
gitea_secrets = {"camo_hmac": "generate"}

# Grafana wherever the lab can run its image (LAB_IMAGES=upstream; lab/environment.py says why not else).
grafana_enabled = grafana_runs()
