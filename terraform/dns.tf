# A and AAAA records for gitea_domain: in a zone created here (dns_zone_mode = create; delegate it
# from the parent zone with the name servers in the `dns_name_servers` output), in an existing zone
# (dns_zone_mode = existing), or nowhere (none).

resource "aws_route53_zone" "this" {
  # checkov:skip=CKV2_AWS_38: DNSSEC needs an asymmetric KMS key in us-east-1 and a DS record at the parent; it is an opt-in step documented in docs/runbooks/aws.md, not a default.
  # checkov:skip=CKV2_AWS_39: query logging requires a log group in us-east-1 and is billed per query; the zone serves two public records.
  count = var.dns_zone_mode == "create" ? 1 : 0

  name    = coalesce(var.dns_zone_name, var.gitea_domain)
  comment = "gitea-deploy ${var.name}"

  tags = { Name = coalesce(var.dns_zone_name, var.gitea_domain) }
}

locals {
  dns_zone_id = {
    create   = one(aws_route53_zone.this[*].zone_id)
    existing = var.dns_zone_id
    none     = null
  }[var.dns_zone_mode]
}

resource "aws_route53_record" "a" {
  count = var.dns_zone_mode == "none" ? 0 : 1

  zone_id = local.dns_zone_id
  name    = var.gitea_domain
  type    = "A"
  ttl     = var.dns_ttl
  records = [aws_eip.host.public_ip]
}

resource "aws_route53_record" "aaaa" {
  count = var.dns_zone_mode == "none" || !var.enable_ipv6 ? 0 : 1

  zone_id = local.dns_zone_id
  name    = var.gitea_domain
  type    = "AAAA"
  ttl     = var.dns_ttl
  records = aws_instance.gitea.ipv6_addresses
}
