"""Render templates/ the way pyinfra's files.template does (Jinja2, StrictUndefined, `host`)."""

from types import SimpleNamespace

import jinja2

from tasks import settings
from tasks.common import REPO
from tasks.gitea import database
from tasks.secrets import LAYOUT


def sample_data(**overrides):
    return {
        **settings.defaults(),
        "gitea_domain": "git.example.com",
        "gitea_admin_email": "admin@example.com",
        "acme_email": "ops@example.com",
        **overrides,
    }


def render(name: str, **context) -> str:
    data_keys = {k: v for k, v in context.items() if k in settings.BY_NAME}
    extra = {k: v for k, v in context.items() if k not in settings.BY_NAME}
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(REPO / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    host = SimpleNamespace(data=SimpleNamespace(**sample_data(**data_keys)))
    if name == "gitea/compose.yaml.j2":
        extra.setdefault("secrets_dir", "/srv/gitea/secrets")
        extra.setdefault("secret_names", sorted(LAYOUT))
        extra.setdefault("database", database(sample_data(**data_keys)))
    return env.get_template(name).render(host=host, **extra)
