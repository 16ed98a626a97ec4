# A complete production configuration with the default sizes (docs/runbooks/aws.md).
#   cp terraform/examples/production.tfvars terraform/production.tfvars   # then edit
#   terraform -chdir=terraform apply -var-file=production.tfvars
# tests/terraform plans this file against emulated AWS, so it stays valid.

region       = "eu-central-1"
name         = "gitea"
gitea_domain = "git.example.org"

# Who may reach the administrator's sshd (port admin_ssh_port). Your office / VPN egress, never the world.
admin_cidrs          = ["203.0.113.10/32", "2001:db8:1234::/48"]
admin_ssh_port       = 2222
admin_ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample operator@example.org"

instance_type    = "t3.small"
root_volume_size = 20
data_volume_size = 50
# ami_id = "ami-0123456789abcdef0"   # pin the AMI; default: /aws/service/debian/release/13/latest/amd64

# Route53: create a zone for git.example.org and delegate it from example.org (runbook step 4).
dns_zone_mode = "create"

alert_email        = "ops@example.org"
monthly_budget_usd = 60

# The account has no CloudTrail trail yet.
enable_cloudtrail = true

database = "container"

# Outgoing mail (password resets, notifications) through Amazon SES SMTP,
# email-smtp.eu-central-1.amazonaws.com: 587 (STARTTLS) or 465 (TLS). Runbook "Outgoing mail".
smtp_egress_port = 587

tags = {
  Owner = "platform-team"
}
