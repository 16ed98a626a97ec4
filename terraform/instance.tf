# The Gitea host: Debian 13, IMDSv2 only, encrypted gp3 root, a separate encrypted data volume
# (everything the stack keeps; survives instance replacement), an Elastic IP, and cloud-init that
# moves the admin sshd and mounts the data volume. Nothing secret is passed in user_data.

data "aws_ssm_parameter" "ami" {
  count = var.ami_id == null ? 1 : 0

  name = var.ami_ssm_parameter
}

locals {
  ami_id = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.ami[0].insecure_value

  user_data = templatefile("${path.module}/templates/cloud-init.yaml.tftpl", {
    admin_ssh_port = var.admin_ssh_port
    first_boot_script = templatefile("${path.module}/templates/first-boot.sh.tftpl", {
      admin_ssh_port = var.admin_ssh_port
      data_volume_id = aws_ebs_volume.data.id
      data_root      = local.data_root
      data_label     = "gitea-data"
    })
  })
}

resource "aws_key_pair" "admin" {
  key_name   = "${var.name}-admin"
  public_key = var.admin_ssh_public_key

  tags = { Name = "${var.name}-admin" }
}

resource "aws_ebs_volume" "data" {
  availability_zone = aws_subnet.public[0].availability_zone
  type              = "gp3"
  size              = var.data_volume_size
  encrypted         = true
  kms_key_id        = var.ebs_kms_key_arn
  final_snapshot    = var.data_volume_final_snapshot

  tags = {
    Name = "${var.name}-data"
    # DLM's target (backup.tf).
    "gitea-deploy:snapshot" = "${var.name}-data"
  }
}

resource "aws_instance" "gitea" {
  # checkov:skip=CKV_AWS_126: detailed monitoring is the variable detailed_monitoring (default off, about 2 USD/month): the status-check metrics the alarms use are per minute either way, and host metrics come from node_exporter on the host.
  ami                    = local.ami_id
  instance_type          = var.instance_type
  subnet_id              = aws_subnet.public[0].id
  vpc_security_group_ids = [aws_security_group.host.id]
  key_name               = aws_key_pair.admin.key_name
  iam_instance_profile   = aws_iam_instance_profile.host.name
  ebs_optimized          = true
  monitoring             = var.detailed_monitoring

  # The public IPv4 is the Elastic IP (associated below): the subnet assigns none at launch
  # (map_public_ip_on_launch = false). associate_public_ip_address is deliberately not set: the
  # provider reads it back as true once the EIP is associated and would replace the instance.
  # IPv6 comes from the subnet.
  ipv6_address_count = var.enable_ipv6 ? 1 : 0

  user_data                   = local.user_data
  user_data_replace_on_change = false

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required" # IMDSv2 only
    # 1: containers behind Docker's bridge cannot reach the instance's credentials.
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "disabled"
  }

  # Automatic recovery: EC2's simplified automatic recovery is on by default for current instance
  # types (maintenance_options.auto_recovery = "default"; not declared because moto cannot read it
  # back), and alerts.tf adds an explicit recover action on the system status check.

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    kms_key_id            = var.ebs_kms_key_arn
    delete_on_termination = true

    tags = { Name = "${var.name}-root" }
  }

  tags = merge({ Name = var.name }, local.discovery_tags)

  lifecycle {
    # A newer Debian AMI in the SSM parameter must not replace the host on the next apply; replace it
    # on purpose with `terraform apply -replace=aws_instance.gitea` (docs/adr/0004).
    ignore_changes = [ami]
  }
}

resource "aws_volume_attachment" "data" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.gitea.id

  # Stop the instance before detaching (instance replacement) so the filesystem is cleanly unmounted.
  stop_instance_before_detaching = true
}

resource "aws_eip" "host" {
  domain = "vpc"

  tags = { Name = var.name }

  depends_on = [aws_internet_gateway.this]
}

resource "aws_eip_association" "host" {
  allocation_id = aws_eip.host.id
  instance_id   = aws_instance.gitea.id
}
