"""inventories/precedence.py and the defaults' one route to hosts (group_data/all.py)."""

import subprocess
import sys
import textwrap

from tasks import REPO


def test_pyinfra_run_from_another_directory_stops_before_any_operation(tmp_path):
    """Defaults reach hosts only through group_data/all.py, which pyinfra reads from the directory it
    runs in. Run from elsewhere, the deploy must stop with that reason, not run with no data_root."""
    inventory = tmp_path / "inventory.py"
    inventory.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from inventories.precedence import checked_hosts
        hosts = checked_hosts([("@local", {{"_sudo": False, "gitea_domain": "git.example.com",
                                            "gitea_admin_email": "a@example.com", "acme_email": "o@example.com"}})],
                              group="elsewhere")
    """))
    result = subprocess.run([sys.executable, "-m", "pyinfra", "-y", "--dry", str(inventory), str(REPO / "deploy.py")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "group_data/all.py was not loaded; run pyinfra from the repository root" in output
