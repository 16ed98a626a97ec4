"""The kernel and the system's limits, hardened where that costs Gitea nothing (dev-sec's
os-hardening and the CIS Debian benchmark, minus what a Docker host needs):

- sysctl (/etc/sysctl.d/90-gitea-deploy.conf): no redirects or source routes accepted or sent,
  reverse-path filtering, martians logged, SYN cookies. Never `ip_forward=0` (Docker forwards
  to its containers) nor `accept_ra=0` (an EC2 instance with IPv6 takes its default route from
  router advertisements). With `sysctl_kernel` also the kernel-wide ones (kernel pointers and
  dmesg hidden, no kexec, ptrace only of one's descendants, no setuid core dumps). Those belong
  to the kernel, not to a network namespace: the lab, whose hosts share your machine's kernel,
  sets it false.
- core dumps off: none for login sessions (limits.d) and none from the containers (compose's
  ulimits); a dump is a copy of memory, secrets included.
- filesystem and network protocol modules nobody here mounts or speaks cannot be loaded
  (modprobe.d); vfat stays, UEFI AMIs mount their EFI partition with it.
"""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.api import deploy

from tasks import snapshot
from tasks.common import REPO, apply_when_stale

# kmod: modprobe, which reads the module drop-in (every AMI has it; minimal images may not).
PACKAGES = ["kmod"]
SYSCTL = "/etc/sysctl.d/90-gitea-deploy.conf"
MODPROBE = "/etc/modprobe.d/gitea-deploy-unused.conf"
LIMITS = "/etc/security/limits.d/gitea-deploy.conf"

# Per network namespace: safe to set inside a container, and what the lab proves.
NET = {
    "net.ipv4.conf.all.accept_redirects": 0, "net.ipv4.conf.default.accept_redirects": 0,
    "net.ipv6.conf.all.accept_redirects": 0, "net.ipv6.conf.default.accept_redirects": 0,
    "net.ipv4.conf.all.secure_redirects": 0, "net.ipv4.conf.default.secure_redirects": 0,
    "net.ipv4.conf.all.send_redirects": 0, "net.ipv4.conf.default.send_redirects": 0,
    "net.ipv4.conf.all.accept_source_route": 0, "net.ipv4.conf.default.accept_source_route": 0,
    "net.ipv6.conf.all.accept_source_route": 0, "net.ipv6.conf.default.accept_source_route": 0,
    "net.ipv4.conf.all.rp_filter": 1, "net.ipv4.conf.default.rp_filter": 1,
    "net.ipv4.conf.all.log_martians": 1, "net.ipv4.conf.default.log_martians": 1,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1, "net.ipv4.icmp_ignore_bogus_error_responses": 1,
    "net.ipv4.tcp_syncookies": 1, "net.ipv4.tcp_rfc1337": 1,
}
# The kernel's own: one value for the whole machine.
KERNEL = {
    "kernel.kptr_restrict": 2, "kernel.dmesg_restrict": 1, "kernel.kexec_load_disabled": 1,
    "kernel.yama.ptrace_scope": 1, "kernel.sysrq": 0, "kernel.randomize_va_space": 2,
    "net.core.bpf_jit_harden": 2,
    "fs.suid_dumpable": 0, "fs.protected_hardlinks": 1, "fs.protected_symlinks": 1,
    "fs.protected_fifos": 2, "fs.protected_regular": 2,
}


def wanted(data) -> dict[str, int]:
    """The sysctl settings this host gets."""
    return {**NET, **(KERNEL if data.get("sysctl_kernel") else {})}


def sysctl_conf(settings: dict[str, int]) -> str:
    """The drop-in, serialized here: only the integers of the tables above reach it."""
    lines = [f"{key} = {int(value)}" for key, value in settings.items()]
    return "# Managed by gitea-deploy (tasks/hardening.py explains each choice).\n" + "\n".join(lines) + "\n"


@deploy("Hardening")
def hardening():
    settings = wanted(host.data)
    snapshot.put(name="Kernel settings (sysctl)", src=StringIO(sysctl_conf(settings)), dest=SYSCTL, mode="644")
    # Applied until the kernel runs them (the running values are part of what is compared), so a
    # value changed by hand is set back by the next deploy, as a reboot would.
    apply_when_stale("Apply the kernel settings", marker="sysctl",
                     effective=f"{{ cat {SYSCTL}; sysctl -n {' '.join(settings)}; }}",
                     command=f"sysctl -q -p {SYSCTL}")
    snapshot.put(name="Unused kernel modules cannot load", src=str(REPO / "files/hardening/modprobe.conf"),
                 dest=MODPROBE, mode="644")
    snapshot.put(name="No core dumps for logins", src=str(REPO / "files/hardening/limits.conf"),
                 dest=LIMITS, mode="644")
