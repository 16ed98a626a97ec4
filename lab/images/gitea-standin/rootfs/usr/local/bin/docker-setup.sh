#!/bin/bash
# Container preparation with the rootless Gitea image's behaviour (the deploy relies on it):
# HOME, GITEA_CUSTOM and GITEA_TEMP exist with tight modes; a first app.ini is rendered from
# /etc/templates/app.ini only when none exists (its directory then gets 0700); then every
# GITEA__SECTION__KEY(__FILE) variable is merged into app.ini on every start.

writable_dir() { # writable_dir DIR MODE
    mkdir -p "$1" && chmod "$2" "$1"
    if [ ! -w "$1" ]; then echo "$1 is not writable"; exit 1; fi
}

render_first_app_ini() {
    writable_dir "$(dirname "${GITEA_APP_INI}")" 0700
    (
        # an image started with SECRET_KEY and no INSTALL_LOCK counts as installed
        if [ -n "${SECRET_KEY:-}" ] && [ -z "${INSTALL_LOCK:-}" ]; then INSTALL_LOCK=true; fi
        # legacy plain variables (APP_NAME, DB_HOST, ...) and their defaults, as upstream
        export APP_NAME="${APP_NAME:-Gitea: Git with a cup of tea}" RUN_MODE="${RUN_MODE:-prod}"
        export RUN_USER="${USER:-git}" SSH_DOMAIN="${SSH_DOMAIN:-localhost}" HTTP_PORT="${HTTP_PORT:-3000}"
        export ROOT_URL="${ROOT_URL:-}" DISABLE_SSH="${DISABLE_SSH:-false}" SSH_PORT="${SSH_PORT:-2222}"
        export SSH_LISTEN_PORT="${SSH_LISTEN_PORT:-$SSH_PORT}" LFS_START_SERVER="${LFS_START_SERVER:-false}"
        export DB_TYPE="${DB_TYPE:-sqlite3}" DB_HOST="${DB_HOST:-localhost:3306}" DB_NAME="${DB_NAME:-gitea}"
        export DB_USER="${DB_USER:-root}" DB_PASSWD="${DB_PASSWD:-}" INSTALL_LOCK="${INSTALL_LOCK:-false}"
        export DISABLE_REGISTRATION="${DISABLE_REGISTRATION:-false}"
        export REQUIRE_SIGNIN_VIEW="${REQUIRE_SIGNIN_VIEW:-false}" SECRET_KEY="${SECRET_KEY:-}"
        envsubst </etc/templates/app.ini >"${GITEA_APP_INI}"
    )
}

writable_dir "${HOME}" 0700
mkdir -p "${GITEA_CUSTOM}" && chmod 0500 "${GITEA_CUSTOM}"
writable_dir "${GITEA_TEMP}" 0700
[ -f "${GITEA_APP_INI}" ] || render_first_app_ini
environment-to-ini --config "${GITEA_APP_INI}"
