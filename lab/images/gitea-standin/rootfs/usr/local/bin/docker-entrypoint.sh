#!/bin/sh
# Same flow as the rootless Gitea image: setup, then the given command or `gitea web`.
/usr/local/bin/docker-setup.sh || { echo 'docker setup failed'; exit 1; }
[ $# -gt 0 ] || set -- /usr/local/bin/gitea -c "${GITEA_APP_INI}" web
exec "$@"
