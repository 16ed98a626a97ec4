# The host's security group. Open to the internet: HTTP (ACME HTTP-01 and the redirect), HTTPS and
# Gitea's git-over-SSH. The administrator's sshd (admin_ssh_port) only from admin_cidrs.
# Egress: only the listed TCP ports, the SMTP relay's port when smtp_egress_port is set, and
# PostgreSQL to the RDS security group when database = rds.
# Rules are separate aws_vpc_security_group_*_rule resources (one per CIDR and port) so changing one
# never rewrites the others.

locals {
  # Ports open to everyone. The admin port is never in this map (variables.tf refuses the overlap,
  # tests/terraform/test_policy.py checks it).
  public_tcp_ports = {
    http    = 80
    https   = 443
    git-ssh = var.git_ssh_port
  }

  anywhere = merge(
    { ipv4 = { cidr_ipv4 = "0.0.0.0/0", cidr_ipv6 = null } },
    var.enable_ipv6 ? { ipv6 = { cidr_ipv4 = null, cidr_ipv6 = "::/0" } } : {},
  )

  public_ingress = merge([
    for port_name, port in local.public_tcp_ports : {
      for family, cidr in local.anywhere : "${port_name}-${family}" => merge(cidr, { port = port, description = "${port_name} from anywhere (${family})" })
    }
  ]...)

  # Mail submission to the SMTP relay (SES or another provider): that one port, when set.
  smtp_egress = var.smtp_egress_port == null ? {} : {
    for family, cidr in local.anywhere : "smtp-${var.smtp_egress_port}-${family}" => merge(cidr, { port = var.smtp_egress_port, description = "SMTP ${var.smtp_egress_port} to the mail relay" })
  }

  internet_egress = merge(local.smtp_egress, [
    for port in var.egress_tcp_ports : {
      for family, cidr in local.anywhere : "tcp-${port}-${family}" => merge(cidr, { port = port, description = "TCP ${port} to the internet" })
    }
  ]...)
}

resource "aws_security_group" "host" {
  name        = "${var.name}-host"
  description = "Gitea host: 80/443/git-ssh from anywhere, admin sshd from admin_cidrs only"
  vpc_id      = aws_vpc.this.id

  tags = { Name = "${var.name}-host" }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "public" {
  # checkov:skip=CKV_AWS_24: port 22 here is Gitea's built-in git-over-SSH server, public by design (users push and pull); the administrator's OpenSSH listens on admin_ssh_port, reachable only from admin_cidrs.
  # checkov:skip=CKV_AWS_260: port 80 must be reachable from anywhere for ACME HTTP-01 validation and the 301 redirect to HTTPS; nginx serves nothing else on it.
  for_each = local.public_ingress

  security_group_id = aws_security_group.host.id
  description       = each.value.description
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr_ipv4
  cidr_ipv6         = each.value.cidr_ipv6

  tags = { Name = "${var.name}-${each.key}" }
}

resource "aws_vpc_security_group_ingress_rule" "admin_ssh" {
  for_each = toset(var.admin_cidrs)

  security_group_id = aws_security_group.host.id
  description       = "admin sshd from an admin CIDR"
  ip_protocol       = "tcp"
  from_port         = var.admin_ssh_port
  to_port           = var.admin_ssh_port
  cidr_ipv4         = strcontains(each.value, ":") ? null : each.value
  cidr_ipv6         = strcontains(each.value, ":") ? each.value : null

  tags = { Name = "${var.name}-admin-ssh" }
}

resource "aws_vpc_security_group_egress_rule" "internet" {
  for_each = local.internet_egress

  security_group_id = aws_security_group.host.id
  description       = each.value.description
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr_ipv4
  cidr_ipv6         = each.value.cidr_ipv6

  tags = { Name = "${var.name}-egress-${each.key}" }
}

resource "aws_vpc_security_group_egress_rule" "database" {
  count = local.rds ? 1 : 0

  security_group_id            = aws_security_group.host.id
  description                  = "PostgreSQL to RDS"
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = aws_security_group.database[0].id

  tags = { Name = "${var.name}-egress-postgres" }
}
