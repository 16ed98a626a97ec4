"""Benchmark (not a test): how fast fail2ban bans, per jail, on a converged lab host.

    .venv/bin/python tests/bench/bans.py [--keep] [--name HOST]

For each jail an attacker container at its own address fails fail2ban_maxretry times (as
tests/lab/test_fail2ban.py does); printed: the attempts it took, the seconds from the last
failure to fail2ban listing the address, and the seconds until the attacker's next attempt no
longer gets a connection. Then how many requests a client gets answered past the API burst in a
row before it is banned. Uses its own lab host (default gitea-lab-bench) and removes it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab import api, images, registry  # noqa: E402
from lab.config import STANDIN_GITEA_DEFAULT  # noqa: E402
from lab.converge import deploy  # noqa: E402
from tests.bench.lab_module import own_host_args  # noqa: E402
from tests.lab.test_fail2ban import JAILS, MAXRETRY, Attacker, banned  # noqa: E402

NAME = "gitea-lab-bench"


def until(probe, timeout: float = 60) -> float:
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout:
            return float("nan")
        time.sleep(0.1)
    return time.monotonic() - started


def main() -> int:
    args = own_host_args(__doc__, NAME)
    name = args.name

    api.engine()
    api.down([name])
    api.up([name])
    attackers: list[Attacker] = []
    try:
        result = deploy(name)
        if result["returncode"] != 0:
            print(result["log"][-4000:])
            return 1
        host = api.state()["hosts"][name]
        image = images.ensure("gitea-standin", registry.gitea_build_args(STANDIN_GITEA_DEFAULT))
        print(f"{'jail':<20} {'attempts':>8} {'listed after':>13} {'refused after':>14}")
        for jail, (mode, port, _) in JAILS.items():
            port = port or int(host["admin_ssh_port"])
            attacker = Attacker(image, host["ip"])
            attackers.append(attacker)
            attempts = 0
            while attempts < MAXRETRY and attacker.ip not in banned(name, jail):
                attacker.attempt(mode, port)
                attempts += 1
            listed = until(lambda a=attacker, j=jail: a.ip in banned(name, j))
            refused = until(lambda a=attacker, m=mode, p=port: a.attempt(m, p) == ["unreachable"])
            print(f"{jail:<20} {attempts:>8} {listed:>12.1f}s {refused:>13.1f}s")

        attacker = Attacker(image, host["ip"])
        attackers.append(attacker)
        answers = attacker.attempt("/api/v1/version", 443, 2000)
        print(f"API flood from one address: {answers.count('200')} answered, {answers.count('429')} refused "
              f"with 429, then {'banned' if answers[-1] == 'unreachable' else 'not banned yet'} "
              f"after {len(answers)} requests")
    finally:
        for a in attackers:
            a.remove()
        if not args.keep:
            api.down([name])
    return 0


if __name__ == "__main__":
    sys.exit(main())
