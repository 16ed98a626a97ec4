# Every variable is typed and described; a validation block guards every value that would otherwise
# fail late (at apply time in AWS, or worse, at the first deploy). tests/terraform/test_policy.py checks this.

################################################################################
# General
################################################################################

variable "region" {
  description = "AWS region to build in, e.g. eu-central-1."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must look like an AWS region name, e.g. eu-central-1."
  }
}

variable "name" {
  description = "Short name of this Gitea installation; prefixes every resource name (e.g. gitea, gitea-prod)."
  type        = string
  default     = "gitea"

  validation {
    # Fits bucket, IAM, RDS identifier and log group naming rules at once.
    condition     = can(regex("^[a-z][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3-24 characters: lowercase letters, digits and '-', starting with a letter, not ending with '-'."
  }
}

variable "tags" {
  description = "Extra tags applied to every resource through the provider's default_tags (e.g. Owner, CostCenter). `Name` is set per resource and may not be given here."
  type        = map(string)
  default     = {}

  validation {
    condition     = !contains([for k in keys(var.tags) : lower(k)], "name") && alltrue([for k in keys(var.tags) : !startswith(k, "gitea-deploy:")])
    error_message = "tags may not contain `Name` or keys starting with `gitea-deploy:` (those are set by the module)."
  }
}

variable "aws_endpoint_url" {
  description = "Emulated AWS only (moto in tests): one endpoint URL for every AWS service, plus the provider's skip_* settings. Leave null in production."
  type        = string
  default     = null

  validation {
    condition     = var.aws_endpoint_url == null || can(regex("^https?://", var.aws_endpoint_url))
    error_message = "aws_endpoint_url must be null or an http(s):// URL."
  }
}

################################################################################
# Network
################################################################################

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC (a /16 to /20); public subnets take the first two /24-equivalents, private ones follow. An Amazon-provided IPv6 /56 is added."
  type        = string
  default     = "10.20.0.0/16"

  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && !strcontains(var.vpc_cidr, ":") && try(tonumber(split("/", var.vpc_cidr)[1]) >= 16 && tonumber(split("/", var.vpc_cidr)[1]) <= 20, false)
    error_message = "vpc_cidr must be a valid IPv4 CIDR between /16 and /20."
  }
}

variable "availability_zones" {
  description = "The two Availability Zones to use (the host and its data volume live in the first); null means the first two of <region>a/b/c that exist."
  type        = list(string)
  default     = null

  validation {
    condition     = var.availability_zones == null || (length(coalesce(var.availability_zones, [])) == 2 && length(distinct(coalesce(var.availability_zones, []))) == 2 && alltrue([for z in coalesce(var.availability_zones, []) : startswith(z, var.region)]))
    error_message = "availability_zones must be null or two distinct zone names of the region, e.g. [\"eu-central-1a\", \"eu-central-1b\"]."
  }
}

variable "enable_ipv6" {
  description = "Give the VPC an Amazon-provided IPv6 /56, the host a public IPv6 address, and publish an AAAA record. (False in the moto tests only: moto cannot associate IPv6 blocks with subnets.)"
  type        = bool
  default     = true
}

variable "flow_log_traffic_type" {
  description = "Which traffic the VPC flow logs record: ALL, ACCEPT or REJECT (REJECT is cheapest and shows the probes)."
  type        = string
  default     = "ALL"

  validation {
    condition     = contains(["ALL", "ACCEPT", "REJECT"], var.flow_log_traffic_type)
    error_message = "flow_log_traffic_type must be ALL, ACCEPT or REJECT."
  }
}

variable "log_retention_days" {
  description = "Retention of the CloudWatch log groups (VPC flow logs, the host's log groups, RDS logs), in days."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)."
  }
}

################################################################################
# Security groups and SSH
################################################################################

variable "admin_cidrs" {
  description = "CIDRs (IPv4 and/or IPv6) allowed to reach the administrator's sshd on admin_ssh_port. Required: there is deliberately no default, and the whole internet is refused."
  type        = list(string)

  validation {
    condition     = length(var.admin_cidrs) > 0 && alltrue([for c in var.admin_cidrs : can(cidrhost(c, 0))])
    error_message = "admin_cidrs must be a non-empty list of valid CIDRs, e.g. [\"203.0.113.7/32\"]."
  }

  validation {
    condition     = alltrue([for c in var.admin_cidrs : try(tonumber(split("/", c)[1]) >= (strcontains(c, ":") ? 32 : 8), false)])
    error_message = "admin_cidrs may not open the admin port to the internet: 0.0.0.0/0, ::/0 and other huge ranges (shorter than /8 for IPv4, /32 for IPv6) are refused."
  }
}

variable "admin_ssh_port" {
  description = "TCP port of the administrator's OpenSSH (cloud-init moves sshd there; port 22 is left to Gitea's git-over-SSH)."
  type        = number
  default     = 2222

  validation {
    condition     = var.admin_ssh_port >= 1024 && var.admin_ssh_port <= 65535 && floor(var.admin_ssh_port) == var.admin_ssh_port
    error_message = "admin_ssh_port must be an integer between 1024 and 65535."
  }

  validation {
    condition     = !contains([80, 443, var.git_ssh_port], var.admin_ssh_port)
    error_message = "admin_ssh_port must differ from 80, 443 and git_ssh_port (those are open to the internet)."
  }
}

variable "git_ssh_port" {
  description = "Public TCP port of Gitea's built-in SSH server (git over SSH), open to the internet."
  type        = number
  default     = 22

  validation {
    condition     = var.git_ssh_port >= 1 && var.git_ssh_port <= 65535 && !contains([80, 443], var.git_ssh_port)
    error_message = "git_ssh_port must be a TCP port other than 80 and 443."
  }
}

variable "egress_tcp_ports" {
  description = "TCP ports the host may open connections to on the internet (80/443: Debian mirrors, image registries, ACME, AWS APIs). Outgoing mail: smtp_egress_port."
  type        = list(number)
  default     = [80, 443]

  validation {
    condition     = length(var.egress_tcp_ports) > 0 && alltrue([for p in var.egress_tcp_ports : p >= 1 && p <= 65535 && floor(p) == p])
    error_message = "egress_tcp_ports must be a non-empty list of TCP ports (1-65535)."
  }
}

variable "smtp_egress_port" {
  description = "TCP port of the SMTP relay Gitea sends mail through (SES: 587 STARTTLS or 465 TLS; 2525 where a provider offers it; AWS blocks 25 unless lifted). Adds egress to that port only; null = no mail egress."
  type        = number
  default     = null

  validation {
    condition     = var.smtp_egress_port == null ? true : (floor(var.smtp_egress_port) == var.smtp_egress_port && var.smtp_egress_port >= 1 && var.smtp_egress_port <= 65535 && !contains(var.egress_tcp_ports, var.smtp_egress_port))
    error_message = "smtp_egress_port must be null or a TCP port (1-65535) that egress_tcp_ports does not already open."
  }
}

################################################################################
# Instance
################################################################################

variable "instance_type" {
  description = "EC2 instance type. Must match the AMI's architecture (Graviton types like t4g.* need the arm64 AMI parameter)."
  type        = string
  default     = "t3.small"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must look like an EC2 instance type, e.g. t3.small."
  }

  validation {
    # A Graviton type with the amd64 AMI (or the reverse) only fails when AWS starts the instance.
    condition = var.ami_id != null || (
      can(regex("^[a-z]+[0-9]+[a-z]*g[a-z]*\\.", var.instance_type)) == endswith(var.ami_ssm_parameter, "arm64")
    )
    error_message = "instance_type and ami_ssm_parameter disagree on the CPU architecture: Graviton types (t4g, m7g, ...) need .../arm64, others .../amd64."
  }
}

variable "ami_ssm_parameter" {
  description = "Public SSM parameter holding the Debian 13 AMI ID (used when ami_id is null)."
  type        = string
  default     = "/aws/service/debian/release/13/latest/amd64"

  validation {
    condition     = startswith(var.ami_ssm_parameter, "/")
    error_message = "ami_ssm_parameter must be an SSM parameter name starting with '/'."
  }
}

variable "ami_id" {
  description = "Pin the AMI (e.g. ami-0123456789abcdef0) instead of reading ami_ssm_parameter. The running instance is never replaced just because a newer AMI appears (docs/adr/0004)."
  type        = string
  default     = null

  validation {
    condition     = var.ami_id == null || can(regex("^ami-[0-9a-f]{8,17}$", var.ami_id))
    error_message = "ami_id must be null or an AMI ID like ami-0123456789abcdef0."
  }
}

variable "admin_ssh_public_key" {
  description = "The operator's SSH public key (OpenSSH format) installed for the `admin` user."
  type        = string

  validation {
    condition     = can(regex("^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)) [A-Za-z0-9+/]+=* ?", var.admin_ssh_public_key))
    error_message = "admin_ssh_public_key must be an OpenSSH public key line (ssh-ed25519 AAAA..., ssh-rsa AAAA... or ecdsa-sha2-...)."
  }
}

variable "root_volume_size" {
  description = "Size of the encrypted gp3 root volume in GiB (OS, Docker images; no data)."
  type        = number
  default     = 20

  validation {
    condition     = var.root_volume_size >= 8 && var.root_volume_size <= 1024
    error_message = "root_volume_size must be between 8 and 1024 GiB."
  }
}

variable "data_volume_size" {
  description = "Size of the encrypted gp3 data volume mounted at /srv/gitea (repositories, database, everything the stack keeps), in GiB. Can grow later, never shrink."
  type        = number
  default     = 50

  validation {
    condition     = var.data_volume_size >= 10 && var.data_volume_size <= 16384
    error_message = "data_volume_size must be between 10 and 16384 GiB."
  }
}

variable "data_volume_final_snapshot" {
  description = "Take a snapshot of the data volume when Terraform deletes it (terraform destroy, or a change that replaces it)."
  type        = bool
  default     = true
}

variable "ebs_kms_key_arn" {
  description = "KMS key ARN for the root and data volumes; null uses the account's default EBS key (aws/ebs)."
  type        = string
  default     = null

  validation {
    condition     = var.ebs_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.ebs_kms_key_arn))
    error_message = "ebs_kms_key_arn must be null or a KMS key ARN."
  }
}

variable "detailed_monitoring" {
  description = "Enable EC2 detailed (1-minute) monitoring. Status-check metrics are per minute either way."
  type        = bool
  default     = false
}

################################################################################
# Gitea
################################################################################

variable "gitea_domain" {
  description = "Public FQDN of Gitea (e.g. git.example.org): DNS records, the deploy's gitea_domain, the TLS certificate name."
  type        = string

  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.gitea_domain))
    error_message = "gitea_domain must be a lowercase fully qualified domain name without a trailing dot, e.g. git.example.org."
  }
}

variable "ssm_parameter_path" {
  description = "SSM Parameter Store path the host may read (the deploy's ssm_parameter_path); null means /gitea-deploy/<name>."
  type        = string
  default     = null

  validation {
    condition     = var.ssm_parameter_path == null || (can(regex("^(/[A-Za-z0-9_.-]+)+$", var.ssm_parameter_path)) && !can(regex("^/(aws|ssm)", lower(coalesce(var.ssm_parameter_path, "/x")))))
    error_message = "ssm_parameter_path must look like /a/b (no trailing slash) and may not start with /aws or /ssm (reserved)."
  }
}

################################################################################
# Backups
################################################################################

variable "backup_bucket_name" {
  description = "Name of the backups bucket; null means <name>-backups-<account id>-<region> (globally unique)."
  type        = string
  default     = null

  validation {
    condition     = var.backup_bucket_name == null || can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.backup_bucket_name))
    error_message = "backup_bucket_name must be a valid S3 bucket name (3-63 lowercase letters, digits, '.', '-')."
  }
}

variable "backup_s3_prefix" {
  description = "Key prefix inside the backups bucket the host may read and write (the deploy's backup_s3_prefix)."
  type        = string
  default     = "gitea"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9_.-]+)*$", var.backup_s3_prefix))
    error_message = "backup_s3_prefix must be a relative key prefix without leading or trailing '/', e.g. gitea or prod/gitea."
  }
}

variable "backup_kms_key_arn" {
  description = "KMS key ARN for SSE-KMS on the backups bucket; null uses SSE-S3 (restic encrypts client-side anyway)."
  type        = string
  default     = null

  validation {
    condition     = var.backup_kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:", var.backup_kms_key_arn))
    error_message = "backup_kms_key_arn must be null or a KMS key ARN."
  }
}

variable "backup_noncurrent_version_days" {
  description = "Days an overwritten or deleted backup object version is kept before S3 expires it (the window to recover from a compromised host)."
  type        = number
  default     = 30

  validation {
    condition     = var.backup_noncurrent_version_days >= 1
    error_message = "backup_noncurrent_version_days must be at least 1."
  }
}

variable "enable_data_volume_snapshots" {
  description = "Daily EBS snapshots of the data volume by Data Lifecycle Manager. (False in the moto tests only: moto has no DLM API.)"
  type        = bool
  default     = true
}

variable "snapshot_retention_count" {
  description = "How many daily data-volume snapshots DLM keeps."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_count >= 1 && var.snapshot_retention_count <= 1000
    error_message = "snapshot_retention_count must be between 1 and 1000."
  }
}

variable "snapshot_time_utc" {
  description = "Daily time (UTC, HH:MM) when DLM starts the data-volume snapshot."
  type        = string
  default     = "03:00"

  validation {
    condition     = can(regex("^([01][0-9]|2[0-3]):[0-5][0-9]$", var.snapshot_time_utc))
    error_message = "snapshot_time_utc must be HH:MM (24 h, UTC)."
  }
}

################################################################################
# DNS
################################################################################

variable "dns_zone_mode" {
  description = "Route53 records for gitea_domain: `create` a hosted zone (named dns_zone_name, default gitea_domain) and delegate it, use an `existing` zone (dns_zone_id), or `none` (DNS managed elsewhere)."
  type        = string
  default     = "create"

  validation {
    condition     = contains(["create", "existing", "none"], var.dns_zone_mode)
    error_message = "dns_zone_mode must be create, existing or none."
  }

  validation {
    condition     = var.dns_zone_mode != "existing" || var.dns_zone_id != null
    error_message = "dns_zone_mode = \"existing\" needs dns_zone_id."
  }
}

variable "dns_zone_id" {
  description = "ID of an existing Route53 hosted zone that contains gitea_domain (dns_zone_mode = existing)."
  type        = string
  default     = null

  validation {
    condition     = var.dns_zone_id == null || can(regex("^Z[A-Z0-9]{1,31}$", var.dns_zone_id))
    error_message = "dns_zone_id must be a Route53 hosted zone ID like Z0123456789ABCDEFGHIJ."
  }
}

variable "dns_zone_name" {
  description = "Name of the hosted zone to create (dns_zone_mode = create); null means gitea_domain itself, so only that name is delegated to Route53."
  type        = string
  default     = null

  validation {
    condition     = var.dns_zone_name == null || var.dns_zone_name == var.gitea_domain || endswith(var.gitea_domain, ".${coalesce(var.dns_zone_name, "-")}")
    error_message = "dns_zone_name must be gitea_domain or one of its parent domains."
  }
}

variable "dns_ttl" {
  description = "TTL in seconds of the A/AAAA records."
  type        = number
  default     = 300

  validation {
    condition     = var.dns_ttl >= 30 && var.dns_ttl <= 86400
    error_message = "dns_ttl must be between 30 and 86400 seconds."
  }
}

################################################################################
# Alerts, budget, audit
################################################################################

variable "alert_email" {
  description = "E-mail address subscribed to the alerts SNS topic and the budget alerts (AWS sends a confirmation mail first); null for none."
  type        = string
  default     = null

  validation {
    condition     = var.alert_email == null || can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", var.alert_email))
    error_message = "alert_email must be null or an e-mail address."
  }
}

variable "heartbeat_period_seconds" {
  description = "Period of the heartbeat alarm in seconds: each period needs at least one of the host's datapoints (it sends one every 60 s). A multiple of 60."
  type        = number
  default     = 60

  validation {
    condition     = var.heartbeat_period_seconds >= 60 && var.heartbeat_period_seconds <= 3600 && var.heartbeat_period_seconds % 60 == 0
    error_message = "heartbeat_period_seconds must be a multiple of 60 between 60 and 3600 (the host sends a datapoint every 60 s)."
  }
}

variable "heartbeat_evaluation_periods" {
  description = "How many periods in a row without a heartbeat before the alarm goes off (with 60 s periods: minutes of silence). More tolerates a slow reboot or a short network outage; fewer pages sooner."
  type        = number
  default     = 5

  validation {
    condition     = var.heartbeat_evaluation_periods >= 1 && floor(var.heartbeat_evaluation_periods) == var.heartbeat_evaluation_periods && var.heartbeat_evaluation_periods * var.heartbeat_period_seconds <= 86400
    error_message = "heartbeat_evaluation_periods must be a whole number of at least 1, and periods x period at most one day (86400 s)."
  }
}

variable "enable_budget" {
  description = "Create an AWS Budgets cost budget with alerts at 80 % (actual) and 100 % (forecast) of monthly_budget_usd."
  type        = bool
  default     = true
}

variable "monthly_budget_usd" {
  description = "Monthly cost budget in USD for the alert."
  type        = number
  default     = 60

  validation {
    condition     = var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be positive."
  }
}

variable "enable_cloudtrail" {
  description = "Create a multi-region CloudTrail trail (with log file validation) and its bucket. Enable it in accounts that have no trail yet; a second trail doubles the cost of management events."
  type        = bool
  default     = false
}

variable "cloudtrail_retention_days" {
  description = "Days CloudTrail log files are kept in their bucket."
  type        = number
  default     = 365

  validation {
    condition     = var.cloudtrail_retention_days >= 90
    error_message = "cloudtrail_retention_days must be at least 90."
  }
}

################################################################################
# Database
################################################################################

variable "database" {
  description = "Where PostgreSQL runs: `container` (in the Compose stack, data on the data volume) or `rds` (managed, in private subnets)."
  type        = string
  default     = "container"

  validation {
    condition     = contains(["container", "rds"], var.database)
    error_message = "database must be container or rds."
  }
}

variable "db_instance_class" {
  description = "RDS instance class (database = rds)."
  type        = string
  default     = "db.t4g.micro"

  validation {
    condition     = startswith(var.db_instance_class, "db.")
    error_message = "db_instance_class must be an RDS class such as db.t4g.micro."
  }
}

variable "db_engine_version" {
  description = "PostgreSQL major version on RDS (database = rds); 15 or later, where RDS forces TLS by default (rds.force_ssl = 1)."
  type        = string
  default     = "17"

  validation {
    condition     = can(regex("^(1[5-9]|[2-9][0-9])$", var.db_engine_version))
    error_message = "db_engine_version must be a PostgreSQL major version of 15 or later (TLS forced by default), e.g. \"17\"."
  }
}

variable "db_allocated_storage" {
  description = "Initial RDS storage in GiB (storage autoscaling may grow it to 5x)."
  type        = number
  default     = 20

  validation {
    condition     = var.db_allocated_storage >= 20 && var.db_allocated_storage <= 6000
    error_message = "db_allocated_storage must be between 20 and 6000 GiB."
  }
}

variable "db_backup_retention_days" {
  description = "RDS automated backup retention in days."
  type        = number
  default     = 7

  validation {
    condition     = var.db_backup_retention_days >= 1 && var.db_backup_retention_days <= 35
    error_message = "db_backup_retention_days must be between 1 and 35."
  }
}

variable "db_multi_az" {
  description = "Run RDS Multi-AZ (a standby in the second AZ; doubles the instance cost)."
  type        = bool
  default     = false
}

variable "db_deletion_protection" {
  description = "RDS deletion protection. Keep true; set false only to destroy on purpose (the moto tests do)."
  type        = bool
  default     = true
}
