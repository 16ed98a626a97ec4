"""Render templates/ the way the deploy does: Jinja2 with StrictUndefined, `host.data` from the
settings' defaults plus the test's values, and the rest of the context from the task's own
`contexts(data)` (tasks/<concern>.py), so a test renders exactly what a host would get."""

from importlib import import_module
from types import SimpleNamespace

import jinja2

from tasks import REPO, settings

# The task module that renders each templates/<folder>/ (named after its concern).
TASK_OF_FOLDER = {"ssh": "base", "journald": "base", "gitea": "gitea", "nginx": "nginx", "certbot": "certbot", "docker": "docker",
                  "backup": "backup", "node_exporter": "node_exporter",
                  "monitoring": "monitoring", "firewall": "firewall", "fail2ban": "fail2ban"}


def sample_data(**overrides):
    return {
        **settings.defaults(),
        "gitea_domain": "git.example.com",
        "gitea_admin_email": "admin@example.com",
        "acme_email": "ops@example.com",
        **overrides,
    }


def context(name: str, data: dict) -> dict:
    task = import_module(f"tasks.{TASK_OF_FOLDER[name.split('/')[0]]}")
    contexts = getattr(task, "contexts", None)
    return contexts(data).get(name, {}) if contexts else {}


def render_with(name: str, data: dict, context: dict) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.get_template(name).render(host=SimpleNamespace(data=SimpleNamespace(**data)), **context)


def render(name: str, **values) -> str:
    """templates/<name> for the sample inventory data with `values` laid over it."""
    unknown = set(values) - set(settings.BY_NAME)
    assert not unknown, f"not settings: {unknown} (the rest of the context comes from the task's contexts())"
    data = sample_data(**values)
    return render_with(name, data, context(name, data))
