"""tasks/node_exporter.py: host metrics on loopback only, with the textfile collector working."""


def metrics(target) -> str:
    return target.sudo(f"curl -fsS http://127.0.0.1:{target.data['node_exporter_port']}/metrics").stdout


def test_running_enabled_and_listening_on_loopback_only(target):
    assert target.service("prometheus-node-exporter") == (True, True)
    listeners = [line.split()[3] for line in target.sudo("ss -Hltnp").stdout.splitlines() if "prometheus-node" in line]
    assert listeners == [f"127.0.0.1:{target.data['node_exporter_port']}"]


def test_textfile_collector_reads_its_directory(target):
    text = metrics(target)
    assert "node_textfile_scrape_error 0" in text
    # The backup job's file is there from the first deploy on (tasks/backup.py).
    assert 'gitea_backup_last_success_timestamp_seconds{repository="' in text
