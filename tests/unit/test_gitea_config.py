"""gitea_config / gitea_secrets: any app.ini option, checked against Gitea's naming rules, with the
deploy's own keys and inline secrets refused (tasks/settings/gitea_config.py)."""

import pytest

from tasks import secrets as secrets_task
from tasks.settings import gitea_config as gc


def rendered(config, secrets=None):
    assert gc.problems(config, secrets or {}) == []
    return gc.render({"gitea_config": config, "gitea_secrets": secrets or {}})


# --- names, as Gitea decodes them (modules/setting/config_env.go and its tests) -----------------

@pytest.mark.parametrize("name, decoded", [
    ("GITEA__SEC__KEY", ("sec", "KEY", False)),                   # upstream TestDecodeEnvironmentKey
    ("GITEA__SEC__KEY__FILE", ("sec", "KEY", True)),
    ("GITEA__LOG_0x2E_CONSOLE__STDERR", ("log.console", "STDERR", False)),  # upstream TestDecodeEnvSectionKey
    ("GITEA__sec__key", ("sec", "key", False)),                   # keys keep their case
    ("GITEA____APP_NAME", ("", "APP_NAME", False)),               # the root section
    ("GITEA__DEFAULT__APP_NAME", ("default", "APP_NAME", False)),  # a junk [default] section, not the root
    ("GITEA__ui__FILE", None),                                    # __FILE eats the key: Gitea ignores it
    ("SEC__KEY", None),
])
def test_decode_follows_gitea(name, decoded):
    assert gc.decode(name) == decoded


def test_root_section_is_four_underscores_not_default():
    assert gc.variable("", "APP_NAME") == "GITEA____APP_NAME"
    assert gc.variable("repository.pull-request", "DEFAULT_MERGE_STYLE") == \
        "GITEA__repository_0X2E_pull_0X2D_request__DEFAULT_MERGE_STYLE"


# --- good cases: each worked example of docs/runbooks/configure.md renders exactly --------------

def test_oauth2_login_tuning():
    env = rendered({
        "oauth2_client": {"ENABLE_AUTO_REGISTRATION": True, "USERNAME": "preferred_username",
                          "ACCOUNT_LINKING": "login", "OPENID_CONNECT_SCOPES": "openid profile email"},
        "service": {"ALLOW_ONLY_EXTERNAL_REGISTRATION": True, "SHOW_REGISTRATION_BUTTON": False},
    }).environment
    assert env == {
        "GITEA__oauth2_client__ACCOUNT_LINKING": "login",
        "GITEA__oauth2_client__ENABLE_AUTO_REGISTRATION": "true",
        "GITEA__oauth2_client__OPENID_CONNECT_SCOPES": "openid profile email",
        "GITEA__oauth2_client__USERNAME": "preferred_username",
        "GITEA__service__ALLOW_ONLY_EXTERNAL_REGISTRATION": "true",
        "GITEA__service__SHOW_REGISTRATION_BUTTON": "false",
    }


def test_lfs_on_s3_with_its_secret_from_a_file():
    out = rendered({
        "lfs": {"STORAGE_TYPE": "minio", "MINIO_ENDPOINT": "s3.eu-central-1.amazonaws.com",
                "MINIO_BUCKET": "example-gitea-lfs", "MINIO_LOCATION": "eu-central-1", "MINIO_USE_SSL": True,
                "MINIO_ACCESS_KEY_ID__FILE": "lfs_key_id", "MINIO_SECRET_ACCESS_KEY__FILE": "lfs_secret"},
        "server": {"LFS_MAX_FILE_SIZE": 0},
    }, {"lfs_key_id": "operator", "lfs_secret": "operator"})
    assert out.environment == {
        "GITEA__lfs__MINIO_ACCESS_KEY_ID__FILE": "/run/secrets/lfs_key_id",
        "GITEA__lfs__MINIO_BUCKET": "example-gitea-lfs",
        "GITEA__lfs__MINIO_ENDPOINT": "s3.eu-central-1.amazonaws.com",
        "GITEA__lfs__MINIO_LOCATION": "eu-central-1",
        "GITEA__lfs__MINIO_SECRET_ACCESS_KEY__FILE": "/run/secrets/lfs_secret",
        "GITEA__lfs__MINIO_USE_SSL": "true",
        "GITEA__lfs__STORAGE_TYPE": "minio",
        "GITEA__server__LFS_MAX_FILE_SIZE": "0",
    }
    assert out.secrets == ["lfs_key_id", "lfs_secret"]


def test_cache_queue_session_on_redis_connection_strings_from_files():
    out = rendered({
        "cache": {"ADAPTER": "redis", "HOST__FILE": "redis_cache"},
        "queue": {"TYPE": "redis", "CONN_STR__FILE": "redis_queue"},
        "session": {"PROVIDER": "redis", "PROVIDER_CONFIG__FILE": "redis_session"},
    }, {"redis_cache": "operator", "redis_queue": "operator", "redis_session": "operator"})
    assert out.environment == {
        "GITEA__cache__ADAPTER": "redis",
        "GITEA__cache__HOST__FILE": "/run/secrets/redis_cache",
        "GITEA__queue__CONN_STR__FILE": "/run/secrets/redis_queue",
        "GITEA__queue__TYPE": "redis",
        "GITEA__session__PROVIDER": "redis",
        "GITEA__session__PROVIDER_CONFIG__FILE": "/run/secrets/redis_session",
    }
    assert out.keys[("session", "PROVIDER")] == "GITEA__session__PROVIDER"
    assert out.keys[("cache", "HOST")] == "GITEA__cache__HOST__FILE"


def test_indexer():
    assert rendered({"indexer": {"REPO_INDEXER_ENABLED": True, "REPO_INDEXER_TYPE": "bleve",
                                 "REPO_INDEXER_EXCLUDE": "**.min.js,vendor/**", "MAX_FILE_SIZE": 1048576,
                                 "STARTUP_TIMEOUT": "30s"}}).environment == {
        "GITEA__indexer__MAX_FILE_SIZE": "1048576",
        "GITEA__indexer__REPO_INDEXER_ENABLED": "true",
        "GITEA__indexer__REPO_INDEXER_EXCLUDE": "**.min.js,vendor/**",
        "GITEA__indexer__REPO_INDEXER_TYPE": "bleve",
        "GITEA__indexer__STARTUP_TIMEOUT": "30s",
    }


def test_actions_enabled():
    assert rendered({"actions": {"ENABLED": True, "DEFAULT_ACTIONS_URL": "github"}}).environment == {
        "GITEA__actions__DEFAULT_ACTIONS_URL": "github", "GITEA__actions__ENABLED": "true"}


def test_branding_sections_with_dots_numbers_and_awkward_text():
    assert rendered({
        "ui": {"DEFAULT_THEME": "gitea-dark", "THEMES": "gitea-auto,gitea-light,gitea-dark"},
        "ui.meta": {"AUTHOR": "Example Corp", "DESCRIPTION": "Code: 100% ours; #1, costs $0"},
        "": {"RUN_MODE": "prod"},
        "repository.pull-request": {"DEFAULT_MERGE_STYLE": "squash"},
        "git.timeout": {"DEFAULT": 720},
        "cron.update_mirrors": {"SCHEDULE": "@every 30m"},
        "api": {"DEFAULT_PAGING_NUM": 30, "X": 0.5},
    }).environment == {
        "GITEA____RUN_MODE": "prod",
        "GITEA__api__DEFAULT_PAGING_NUM": "30",
        "GITEA__api__X": "0.5",
        "GITEA__cron_0X2E_update_mirrors__SCHEDULE": "@every 30m",
        "GITEA__git_0X2E_timeout__DEFAULT": "720",
        "GITEA__repository_0X2E_pull_0X2D_request__DEFAULT_MERGE_STYLE": "squash",
        "GITEA__ui__DEFAULT_THEME": "gitea-dark",
        "GITEA__ui__THEMES": "gitea-auto,gitea-light,gitea-dark",
        "GITEA__ui_0X2E_meta__AUTHOR": "Example Corp",
        "GITEA__ui_0X2E_meta__DESCRIPTION": "Code: 100% ours; #1, costs $0",  # $$ only in the compose file
    }


def test_every_rendered_name_decodes_back_to_what_was_meant():
    config = {"": {"RUN_MODE": "prod"}, "repository.pull-request": {"X_Y": 1}, "a-b.c_d": {"K__FILE": "s"}}
    env = rendered(config, {"s": "generate"}).environment
    assert sorted(gc.decode(name) for name in env) == [
        ("", "RUN_MODE", False), ("a-b.c_d", "K", True), ("repository.pull-request", "X_Y", False)]


def test_nothing_configured_renders_nothing():
    assert gc.render({}) == gc.Rendered()
    assert gc.problems({}, {}) == []


# --- refused: the deploy's keys (naming the setting to use), bad names, bad values -------------

@pytest.mark.parametrize("config, message", [
    ({"": {"APP_NAME": "My Git"}}, 'gitea_config."".APP_NAME: is set by the deploy: use gitea_app_name'),
    ({"database": {"HOST": "db.example.com:5432"}}, "gitea_config.database.HOST: is set by the deploy: use "
                                                    "database_endpoint"),
    ({"database": {"LOG_SQL": True}}, "gitea_config.database.LOG_SQL: is set by the deploy: use database_endpoint"),
    ({"server": {"ROOT_URL": "https://other.example.com/"}}, "gitea_config.server.ROOT_URL: is set by the deploy: "
                                                            "use gitea_domain"),
    ({"server": {"DOMAIN": "x.example.com"}}, "use gitea_domain"),
    ({"server": {"SSH_PORT": 2200}}, "gitea_config.server.SSH_PORT: is set by the deploy: use git_ssh_port"),
    ({"server": {"HTTP_PORT": 8080}}, "use gitea_http_port"),
    ({"server": {"PUBLIC_URL_DETECTION": "auto"}}, "links always use ROOT_URL"),
    ({"server": {"LFS_JWT_SECRET__FILE": "x"}}, "gitea_config.server.LFS_JWT_SECRET__FILE: is set by the deploy"),
    ({"security": {"SECRET_KEY": "abc"}}, "gitea_config.security.SECRET_KEY: is set by the deploy: use a secret "
                                          "the deploy generates once"),
    ({"security": {"INSTALL_LOCK": False}}, "the web installer never opens"),
    ({"security": {"REVERSE_PROXY_TRUSTED_PROXIES": "*"}}, "use compose_subnet"),
    ({"oauth2": {"JWT_SECRET": "x"}}, "gitea_config.oauth2.JWT_SECRET: is set by the deploy"),
    ({"metrics": {"ENABLED": False}}, "the monitoring agent scrapes /metrics"),
    ({"service": {"DISABLE_REGISTRATION": False}}, "use gitea_disable_registration"),
    ({"service": {"REQUIRE_SIGNIN_VIEW": True}}, "use gitea_require_signin_view"),
    ({"mailer": {"SMTP_ADDR": "smtp.example.com"}}, "gitea_config.mailer.SMTP_ADDR: is set by the deploy: use "
                                                    "mailer_host"),
    ({"mailer": {"PASSWD__FILE": "smtp"}}, "use mailer_user"),
    ({"mailer": {"HOST": "smtp.example.com:465"}}, "use mailer_host and mailer_port"),
    ({"cors": {"X_FRAME_OPTIONS": "DENY"}}, "([cors] X_FRAME_OPTIONS moved to [security] in Gitea 1.26)"),
    ({"security": {"X_FRAME_OPTIONS": "DENY"}}, "nginx sends X-Frame-Options and hides Gitea's"),
    # names
    ({"DEFAULT": {"APP_NAME": "x"}}, 'gitea_config.DEFAULT: the root section is "" (rendered GITEA____KEY)'),
    ({"default": {"APP_NAME": "x"}}, 'gitea_config.default: the root section is ""'),
    ({"Repository": {"X": 1}}, "gitea_config.Repository: is not a Gitea section name"),
    ({"a__b": {"X": 1}}, "gitea_config.a__b: is not a Gitea section name"),
    ({"ui_0x2e_meta": {"X": 1}}, "no __ or _0x"),
    ({"ui meta": {"X": 1}}, "is not a Gitea section name"),
    ({"ui.": {"X": 1}}, "is not a Gitea section name"),
    ({"ui": {"default_theme": "x"}}, "gitea_config.ui.default_theme: is not a Gitea key name"),
    ({"ui": {"A__B": 1}}, "gitea_config.ui.A__B: is not a Gitea key name"),
    ({"ui": {"A_0X2E_B": 1}}, "no __ or _0X"),
    ({"ui": {"_A": 1}}, "is not a Gitea key name"),
    ({"ui": {"FILE": 1}}, "gitea_config.ui.FILE: GITEA__ui__FILE would not decode to [ui] FILE"),
    ({"ui": {"": 1}}, "is not a Gitea key name"),
    ({"ui": {5: 1}}, "gitea_config.ui: key 5 is a int, expected a string"),
    ({5: {"X": 1}}, "gitea_config: section name 5 is a int, expected a string"),
    ({"ui": "gitea-dark"}, "gitea_config.ui: 'gitea-dark' is a str, expected a mapping {KEY: value}"),
    # values
    ({"ui": {"THEMES": ["a", "b"]}}, "gitea_config.ui.THEMES: is a list: values are strings, numbers or booleans"),
    ({"ui": {"X": None}}, "gitea_config.ui.X: is a NoneType"),
    ({"ui": {"X": float("nan")}}, "is not a finite number"),
    ({"ui.meta": {"DESCRIPTION": "two\nlines"}}, "gitea_config.ui.meta.DESCRIPTION: 'two\\nlines' holds '\\n'"),
    ({"ui.meta": {"DESCRIPTION": "tab\there"}}, "holds '\\t'"),
    ({"ui.meta": {"DESCRIPTION": "zero\u200bwidth"}}, "control and format characters"),
    ({"ui.meta": {"DESCRIPTION": "emoji \U0001F600"}}, "beyond U+FFFF"),
    ({"ui.meta": {"DESCRIPTION": " padded"}}, "has leading or trailing spaces"),
    ({"ui.meta": {"DESCRIPTION": '"quoted"'}}, "is wrapped in quotes as a whole"),
    ({"ui.meta": {"DESCRIPTION": 'a """ b'}}, 'holds """'),
    ({"ui.meta": {"DESCRIPTION": "x" * 5000}}, "is longer than 4096 characters"),
])
def test_refused(config, message):
    found = gc.problems(config, {})
    assert any(message in line for line in found), found
    assert len(found) == 1, found


def test_every_owned_key_names_what_to_use_instead():
    for (section, key), instead in gc.OWNED.items():
        line = gc.problems({section: {key or "ANY_KEY": "x"}}, {})
        assert line and line[0].endswith(f"is set by the deploy: use {instead}"), line


# --- secrets: never inline; __FILE names a declared secret; gitea_secrets checked --------------

@pytest.mark.parametrize("section, key, value", [
    ("mailer", "PASSWORD", "hunter2hunter2"),   # not owned by name, still a secret
    ("storage", "MINIO_SECRET_ACCESS_KEY", "abc/def"),
    ("storage", "AZURE_BLOB_ACCOUNT_KEY", "abc=="),
    ("camo", "HMAC_KEY", "abc"),
    ("webhook", "SOME_TOKEN", 12345678),        # a number is still an inline secret
    ("queue", "CONN_STR", "redis://127.0.0.1:6379/0"),
    ("indexer", "ISSUE_INDEXER_CONN_STR", "http://elastic:9200"),
    ("cache", "HOST", "redis://127.0.0.1:6379/0"),
    ("session", "PROVIDER_CONFIG", "redis://127.0.0.1:6379/1"),
])
def test_inline_secret_is_refused_with_the_file_form(section, key, value):
    assert gc.problems({section: {key: value}}, {}) == [
        f"gitea_config.{section}.{key}: is a secret, never inline: write {key}__FILE: \"<name>\" and declare "
        "<name> in gitea_secrets (\"generate\" or \"operator\": the file <data_root>/secrets/<name>)"]


def test_credentials_in_a_url_are_refused_under_any_key():
    assert gc.problems({"proxy": {"PROXY_URL": "http://user:pa55@proxy.example.com:3128"}}, {}) == [
        "gitea_config.proxy.PROXY_URL: holds credentials in a URL (user:password@): put the whole value in a "
        "secret file, PROXY_URL__FILE: \"<name>\", declared in gitea_secrets"]


def test_secret_looking_switches_and_key_ids_are_not_secrets():
    assert rendered({"security": {"DISABLE_QUERY_AUTH_TOKEN": True, "MIN_PASSWORD_LENGTH": 14,
                                  "PASSWORD_COMPLEXITY": "lower,upper,digit"},
                     "repository.signing": {"SIGNING_KEY": "default"},
                     "proxy": {"PROXY_URL": "http://proxy.example.com:3128"}}).environment == {
        "GITEA__proxy__PROXY_URL": "http://proxy.example.com:3128",
        "GITEA__repository_0X2E_signing__SIGNING_KEY": "default",
        "GITEA__security__DISABLE_QUERY_AUTH_TOKEN": "true",
        "GITEA__security__MIN_PASSWORD_LENGTH": "14",
        "GITEA__security__PASSWORD_COMPLEXITY": "lower,upper,digit",
    }


def test_generated_and_operator_secrets_are_mounted():
    out = rendered({"camo": {"ENABLED": True, "HMAC_KEY__FILE": "camo_hmac"},
                    "storage": {"MINIO_SECRET_ACCESS_KEY__FILE": "s3_secret"}},
                   {"camo_hmac": "generate", "s3_secret": "operator"})
    assert out.environment["GITEA__camo__HMAC_KEY__FILE"] == "/run/secrets/camo_hmac"
    assert out.secrets == ["camo_hmac", "s3_secret"]


@pytest.mark.parametrize("config, secrets, message", [
    ({"cache": {"HOST__FILE": "redis"}}, {}, "gitea_config.cache.HOST__FILE: secret 'redis' is not declared in "
                                            "gitea_secrets"),
    ({"cache": {"HOST__FILE": "/etc/passwd"}}, {}, "gitea_config.cache.HOST__FILE: '/etc/passwd' must name a "
                                                  "secret file"),
    ({"cache": {"HOST__FILE": "../db_password"}}, {}, "must name a secret file"),
    ({"cache": {"HOST__FILE": 5}}, {}, "must name a secret file"),
    ({"cache": {"HOST__FILE": "db_password"}}, {"db_password": "operator"},
     "gitea_secrets.db_password: is one of the deploy's own secrets"),
    ({}, {"secret_key": "generate"}, "gitea_secrets.secret_key: is one of the deploy's own secrets"),
    ({}, {"mailer_password": "operator"}, "gitea_secrets.mailer_password: is one of the deploy's own secrets"),
    ({}, {"redis": "file"}, "gitea_secrets.redis: 'file' must be \"generate\""),
    ({}, {"Redis": "operator"}, "gitea_secrets: 'Redis' is not a secret name"),
    ({}, {"a" * 64: "operator"}, "is not a secret name"),
    ({"ui": {"THEMES": "a", "THEMES__FILE": "c"}}, {"c": "operator"}, "THEMES is set twice"),
])
def test_secret_references_checked(config, secrets, message):
    found = gc.problems(config, secrets)
    assert any(message in line for line in found), found


def test_deploy_secrets_cover_every_file_the_deploy_keeps():
    assert set(secrets_task.LAYOUT) | {"admin_password", "restic_password", "mailer_password"} <= gc.DEPLOY_SECRETS
