"""Benchmark (not a test): what Prometheus costs on a converged host at the default scrape interval.

    .venv/bin/python tests/bench/monitoring.py [--name HOST] [--minutes N] [--keep]

Brings up and converges a lab host (default gitea-lab-bench), lets Prometheus scrape for N minutes
(default 10), then prints, read from Prometheus itself and from the host: its resident memory, the
head series, the samples appended per second, the disk a day of them takes (at the 1.3 bytes a
compressed sample costs on average, Prometheus's storage docs give 1-2; and the compacted ratio
once a block has been written), and what its data directory holds now. Removes the host unless
--keep.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lab import api  # noqa: E402
from lab.converge import deploy  # noqa: E402
from tasks.settings import defaults  # noqa: E402

NAME = "gitea-lab-bench"
BYTES_PER_SAMPLE = 1.3  # Prometheus's storage docs: 1-2 bytes a sample after compression
DATA_DIR = "/var/lib/prometheus/metrics2"  # Debian's --storage.tsdb.path


def query(name: str, port: int, expr: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
    out = api.exec(name, ["curl", "-fsS", url], check=True).stdout
    result = json.loads(out)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=NAME, help=f"the lab host to (re)create and remove (default {NAME})")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of scraping before measuring")
    parser.add_argument("--keep", action="store_true", help="leave the host up afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure the host as it is (no bring-up, no deploy)")
    args = parser.parse_args()
    name = args.name

    api.engine()
    if not args.reuse:
        api.down([name])
        api.up([name])
        result = deploy(name)
        if result["returncode"] != 0:
            print(result["log"][-3000:])
            return 1
    port = defaults()["prometheus_port"]  # the lab inventory keeps the default
    time.sleep(args.minutes * 60)

    rss = query(name, port, 'process_resident_memory_bytes{job="prometheus"}') or 0
    series = query(name, port, "prometheus_tsdb_head_series") or 0
    rate = query(name, port, "rate(prometheus_tsdb_head_samples_appended_total[5m])") or 0
    compacted = query(name, port, "prometheus_tsdb_compaction_chunk_size_bytes_sum"
                                  " / prometheus_tsdb_compaction_chunk_samples_sum")
    interval = query(name, port, 'prometheus_target_interval_length_seconds{quantile="0.5"}')
    du = api.exec(name, ["du", "-sb", DATA_DIR], check=True).stdout.split()[0]
    targets = query(name, port, "count(up)") or 0
    if not args.keep:
        api.down([name])

    per_day = rate * 86400
    rows = [
        ("scrape targets", f"{targets:.0f}"),
        ("scrape interval (s, median)", f"{interval:.0f}" if interval else "?"),
        ("minutes scraped before measuring", f"{args.minutes:g}"),
        ("prometheus resident memory (MiB)", f"{rss / 2**20:.0f}"),
        ("head series", f"{series:.0f}"),
        ("samples appended per second", f"{rate:.0f}"),
        ("samples per day", f"{per_day:,.0f}"),
        (f"disk per day at {BYTES_PER_SAMPLE} B/sample (MiB)", f"{per_day * BYTES_PER_SAMPLE / 2**20:.0f}"),
        ("compacted bytes per sample (measured)",
         f"{compacted:.2f}" if compacted and compacted == compacted else "no block yet (first after 2 h)"),
        ("data directory now (MiB)", f"{int(du) / 2**20:.1f}"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
