"""Benchmark (not a test): backup and restore of about 1 GiB of Gitea data on lab hosts.

    .venv/bin/python tests/bench/backup.py [--small-files 16000] [--large-mib 4x128] [--keep]

Seeds host A's data volume with many small files (repository objects) and a few large ones (LFS,
attachments), then prints: the first backup (pause, total, repository sizes), a second backup
after a ~1% change (deduplication), and a restore onto a freshly deployed host B from S3 (the full
host-loss path: B's deploy, `gitea-restore`, healthy). Both hosts share one emulated AWS (moto)
and are removed afterwards. The figures go into docs/concepts/backup.md.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab import api  # noqa: E402
from lab.converge import deploy  # noqa: E402

A, B, AWS = "gitea-lab-bk-bench-a", "gitea-lab-bk-bench-b", "bkbench"
SEED = """
set -eu
root=/srv/gitea/gitea/data
python3 - "$root" "$1" "$2" "$3" <<'PY'
import os, random, sys
root, small, large_count, large_mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(4)
# Repository objects: sizes spread like git's loose and packed objects (1 KiB .. 64 KiB).
for n in range(small):
    d = f"{root}/git/repositories/bench/repo{n % 40:02d}.git/objects/{n % 256:02x}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/{n:038x}", "wb") as f:
        f.write(os.urandom(rng.randint(1024, 65536)))
for n in range(large_count):
    d = f"{root}/git/lfs/{n:02x}/{n:02x}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/large-{n}", "wb") as f:
        for _ in range(large_mib):
            f.write(os.urandom(1 << 20))
PY
chown -R 1000:1000 "$root"
du -sb "$root" | cut -f1
find "$root" -type f | wc -l
"""
CHANGE = """
set -eu
root=/srv/gitea/gitea/data/git/repositories/bench
python3 - "$root" <<'PY'
import os, sys
root = sys.argv[1]
os.makedirs(f"{root}/new.git/objects/00", exist_ok=True)
for n in range(400):  # ~1% new objects, ~10 MiB
    with open(f"{root}/new.git/objects/00/{n:038x}", "wb") as f:
        f.write(os.urandom(25000))
PY
chown -R 1000:1000 "$root"
"""


def sh(name: str, script: str, *args: str, timeout: float = 7200) -> str:
    cp = api.exec(name, ["bash", "-c", script, "bench", *args], timeout=timeout)
    if cp.returncode != 0:
        raise SystemExit(f"{name}: exit {cp.returncode}\n{cp.stdout[-3000:]}\n{cp.stderr[-3000:]}")
    return cp.stdout


def timed(name: str, script: str) -> tuple[float, str]:
    started = time.monotonic()
    out = sh(name, script)
    return time.monotonic() - started, out


def metric(name: str, key: str) -> float:
    text = sh(name, "cat /var/lib/prometheus/node-exporter/gitea_backup.prom")
    return float(re.search(rf"^{re.escape(key)} (\S+)$", text, re.M).group(1))


def repo_sizes(name: str) -> tuple[int, int]:
    local = int(sh(name, "du -sb /srv/gitea/backup/restic | cut -f1"))
    stats = sh(name, "gitea-backup restic s3 stats --mode raw-data --json")
    return local, int(re.search(r'"total_size":(\d+)', stats).group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-files", type=int, default=16000, help="small files (1-64 KiB, ~33 KiB mean)")
    parser.add_argument("--large-mib", default="4x128", help="large files: COUNTxMIB")
    parser.add_argument("--keep", action="store_true", help="leave the hosts and the shared AWS up")
    args = parser.parse_args()
    large_count, large_mib = (int(x) for x in args.large_mib.split("x"))
    mib = 1 << 20
    rows: list[tuple[str, str]] = []

    api.engine()
    api.down([A, B])
    api.aws_down(AWS)
    try:
        api.up([A], aws=AWS)
        assert deploy(A)["returncode"] == 0, "deploy of A failed"
        out = sh(A, SEED, str(args.small_files), str(large_count), str(large_mib))
        size, count = (int(x) for x in out.split())
        rows.append(("seeded data (MiB, files)", f"{size / mib:.0f} MiB, {count} files"))

        seconds, _ = timed(A, "gitea-backup")
        local, s3 = repo_sizes(A)
        rows += [("first backup, total (s)", f"{seconds:.1f}"),
                 ("  of which Gitea paused (s)", f"{metric(A, 'gitea_backup_gitea_pause_seconds'):.1f}"),
                 ("  local repository size (MiB)", f"{local / mib:.0f}"),
                 ("  S3 repository size (MiB)", f"{s3 / mib:.0f}")]

        sh(A, CHANGE)
        seconds, _ = timed(A, "gitea-backup")
        local2, s3_2 = repo_sizes(A)
        rows += [("second backup after ~1% change (s)", f"{seconds:.1f}"),
                 ("  of which Gitea paused (s)", f"{metric(A, 'gitea_backup_gitea_pause_seconds'):.1f}"),
                 ("  added to the repositories (MiB)", f"local {(local2 - local) / mib:.1f}, "
                                                       f"S3 {(s3_2 - s3) / mib:.1f}")]
        seconds, _ = timed(A, "gitea-backup")
        rows.append(("third backup, nothing changed (s)", f"{seconds:.1f}"))

        started = time.monotonic()
        api.up([B], aws=AWS)
        assert deploy(B)["returncode"] == 0, "deploy of B failed"
        deployed = time.monotonic() - started
        seconds, _ = timed(B, "gitea-restore --from s3")
        restored = int(sh(B, "du -sb /srv/gitea/gitea/data | cut -f1"))
        rows += [("fresh host B: up + deploy (s)", f"{deployed:.1f}"),
                 ("restore from S3 onto B, to healthy (s)", f"{seconds:.1f}"),
                 ("  restored data (MiB)", f"{restored / mib:.0f}"),
                 ("recovery from host loss: B up + deploy + restore (s)", f"{deployed + seconds:.1f}")]
        seconds, _ = timed(A, "gitea-restore --from local --force")
        rows.append(("restore from the local repository on A (s)", f"{seconds:.1f}"))
    finally:
        if not args.keep:
            api.down([A, B])
            api.aws_down(AWS)

    width = max(len(k) for k, _ in rows)
    print()
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
