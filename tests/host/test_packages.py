"""tasks/packages.py: every stage's packages are installed, and nothing they only recommend."""

from tasks.packages import wanted

# What the packages' recommends would have brought: a mail server (cron's), git and perl
# (docker.io's), FUSE (restic's). None of them belongs on this host.
NOT_WANTED = ["exim4-daemon-light", "postfix", "git", "fuse3"]


def installed(target, names: list[str]) -> set[str]:
    out = target.sudo("dpkg-query -W -f '${Package} ${db:Status-Status}\\n' " + " ".join(names) + " 2>/dev/null; true")
    return {line.split()[0] for line in out.stdout.splitlines() if line.endswith(" installed")}


def test_every_stage_package_is_installed(target):
    names = wanted(target.data)
    assert installed(target, names) == set(names)


def test_no_recommended_extras(target):
    assert installed(target, NOT_WANTED) == set()
