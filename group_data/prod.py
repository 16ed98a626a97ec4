"""Production values only the operator knows. The deploy refuses to run until they are set.

Everything else comes from Terraform's outputs (host, admin port, domain, bucket...) or the
defaults in tasks/settings/table.py.
"""

# acme_email = "ops@example.com"          # Let's Encrypt account: expiry notices go here
# gitea_admin_email = "ops@example.com"   # the first Gitea administrator
# With terraform's database = "rds" (docs/runbooks/deploy.md, An external database):
# database_ca_bundle = open("/path/to/rds-global-bundle.pem").read()
