"""The local lab: throwaway Debian 13 hosts that look like the production EC2 instance.

Run it as ``python -m lab <command>`` (see docs/lab.md) or use :mod:`lab.api` from tests.
The lab knows nothing about the deploy beyond docs/dev/contracts.md: it makes a host that looks
like a fresh Debian AMI after cloud-init, plus the sidecars (registry, pebble, moto) that stand
in for the internet services the deploy talks to.
"""

from tasks import REPO

LAB_DIR = REPO / ".lab"


class LabError(RuntimeError):
    """A lab step failed; the message says which step and shows the evidence (logs, output)."""
