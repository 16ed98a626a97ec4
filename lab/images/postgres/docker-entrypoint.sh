#!/usr/bin/env bash
# Entrypoint of the lab PostgreSQL image. It reproduces the behaviour of the official image's
# docker-entrypoint.sh (docker-library/postgres) that the deploy relies on:
#   POSTGRES_USER (default postgres), POSTGRES_PASSWORD / POSTGRES_PASSWORD_FILE (exclusive),
#   POSTGRES_DB (default = user), POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR,
#   POSTGRES_HOST_AUTH_METHOD, PGDATA; initdb only when PGDATA has no PG_VERSION;
#   /docker-entrypoint-initdb.d/*.sql|*.sql.gz|*.sh on first start; postgres as PID 1.
# Secrets never reach a command line: initdb reads the password from a pipe, psql from PGPASSWORD.
set -Eeo pipefail

die() {
	printf >&2 'error: %s\n' "$*"
	exit 1
}

# usage: from_env_or_file VAR [DEFAULT]
# VAR or VAR_FILE, never both (the official image refuses both too). The file is read by whoever
# runs this: root on the first pass, exactly like the official image (which reads it before
# stepping down to postgres). VAR_FILE leaves the environment once VAR holds the value.
from_env_or_file() {
	local var=$1 file_var="${1}_FILE" value=${2:-}
	if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
		die "both $var and $file_var are set (but are exclusive)"
	fi
	if [[ -n ${!var:-} ]]; then
		value=${!var}
	elif [[ -n ${!file_var:-} ]]; then
		[[ -r ${!file_var} ]] || die "$file_var: cannot read '${!file_var}' as uid $(id -u)"
		value=$(<"${!file_var}")
	fi
	export "$var=$value"
	unset "$file_var"
}

load_settings() {
	from_env_or_file POSTGRES_PASSWORD
	from_env_or_file POSTGRES_USER postgres
	from_env_or_file POSTGRES_DB "$POSTGRES_USER"
	from_env_or_file POSTGRES_INITDB_ARGS
	: "${POSTGRES_HOST_AUTH_METHOD:=}"
	export PGDATA=${PGDATA:-/var/lib/postgresql/data}
	CLUSTER_EXISTS=
	# PG_VERSION is what marks an initialised data directory
	if [[ -s $PGDATA/PG_VERSION ]]; then
		CLUSTER_EXISTS=yes
	fi
}

prepare_directories() {
	mkdir -p "$PGDATA"
	# may fail on odd mounts; postgres itself then refuses to start with a clear message
	chmod 0700 "$PGDATA" || :
	mkdir -p /var/run/postgresql || :
	chmod 03775 /var/run/postgresql || :
	if [[ -n ${POSTGRES_INITDB_WALDIR:-} ]]; then
		mkdir -p "$POSTGRES_INITDB_WALDIR"
		[[ $(id -u) != 0 ]] || find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres: '{}' +
		chmod 0700 "$POSTGRES_INITDB_WALDIR"
	fi
	if [[ $(id -u) == 0 ]]; then
		find "$PGDATA" /var/run/postgresql \! -user postgres -exec chown postgres: '{}' +
	fi
}

check_password_given() {
	if [[ -z $POSTGRES_PASSWORD && $POSTGRES_HOST_AUTH_METHOD != trust ]]; then
		cat >&2 <<-'EOF'
			Error: Database is uninitialized and superuser password is not specified.
			       You must specify POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) to a non-empty
			       value for the superuser, or set POSTGRES_HOST_AUTH_METHOD=trust (not recommended).
		EOF
		exit 1
	fi
	if [[ $POSTGRES_HOST_AUTH_METHOD == trust ]]; then
		echo >&2 'WARNING: POSTGRES_HOST_AUTH_METHOD=trust: any client that reaches the port gets in without a password.'
	fi
}

run_initdb() {
	local -a waldir=()
	[[ -z ${POSTGRES_INITDB_WALDIR:-} ]] || waldir=(--waldir "$POSTGRES_INITDB_WALDIR")
	# POSTGRES_INITDB_ARGS is shell-parsed (eval), as the official image documents; the password goes
	# through a process-substitution pipe (printf is a builtin: no process carries it as an argument).
	# The trailing newline keeps initdb from rejecting an empty file (trust mode).
	eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "${waldir[@]}"'
}

# Host connections (TCP) use the configured password_encryption (scram-sha-256 on 17) unless
# POSTGRES_HOST_AUTH_METHOD says otherwise; local socket connections stay "trust" (initdb default).
append_host_rule() {
	local method
	method=$(postgres -C password_encryption "$@")
	: "${POSTGRES_HOST_AUTH_METHOD:=$method}"
	{
		printf '\n'
		[[ $POSTGRES_HOST_AUTH_METHOD != trust ]] || printf '# warning: trust is enabled for all connections\n'
		printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
	} >>"$PGDATA/pg_hba.conf"
}

sql() {
	local -a cmd=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
	[[ -z $POSTGRES_DB ]] || cmd+=(--dbname "$POSTGRES_DB")
	PGHOST= PGHOSTADDR= "${cmd[@]}" "$@"
}

# Socket-only server for the first-start setup: nothing outside the container can reach it.
start_setup_server() {
	local -a args=("$@" -c "listen_addresses=" -p "${PGPORT:-5432}")
	NOTIFY_SOCKET= PGUSER="${PGUSER:-$POSTGRES_USER}" \
		pg_ctl -D "$PGDATA" -o "$(printf '%q ' "${args[@]}")" -w start
}

stop_setup_server() {
	PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

create_database() {
	local found
	found=$(POSTGRES_DB= sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
	)
	if [[ -z $found ]]; then
		POSTGRES_DB= sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
	fi
}

run_init_files() {
	local f
	for f; do
		case $f in
			*.sh)
				# executable scripts run, others are sourced (they may call `sql`), as upstream does
				if [[ -x $f ]]; then
					printf '%s: running %s\n' "$0" "$f"
					"$f"
				else
					printf '%s: sourcing %s\n' "$0" "$f"
					# shellcheck disable=SC1090
					. "$f"
				fi
				;;
			*.sql) printf '%s: running %s\n' "$0" "$f"; sql -f "$f" ;;
			*.sql.gz) printf '%s: running %s\n' "$0" "$f"; gunzip -c "$f" | sql ;;
			*) printf '%s: ignoring %s\n' "$0" "$f" ;;
		esac
	done
}

wants_help() {
	local arg
	for arg; do
		case $arg in
			-'?' | --help | --describe-config | -V | --version) return 0 ;;
		esac
	done
	return 1
}

main() {
	# `docker run IMAGE -c foo=bar` means "postgres -c foo=bar"
	if [[ ${1:0:1} == - ]]; then
		set -- postgres "$@"
	fi

	if [[ $1 == postgres ]] && ! wants_help "$@"; then
		load_settings
		prepare_directories
		if [[ $(id -u) == 0 ]]; then
			# step down to postgres and start over; setpriv execs in place, so PID 1 stays PID 1
			HOME=/var/lib/postgresql exec setpriv --reuid=postgres --regid=postgres --init-groups \
				"${BASH_SOURCE[0]}" "$@"
		fi

		if [[ -z $CLUSTER_EXISTS ]]; then
			check_password_given
			# fail early (before initdb) if the init directory is unreadable
			ls /docker-entrypoint-initdb.d/ >/dev/null
			run_initdb
			append_host_rule "${@:2}"
			export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
			start_setup_server "${@:2}"
			create_database
			shopt -s nullglob
			run_init_files /docker-entrypoint-initdb.d/*
			shopt -u nullglob
			stop_setup_server
			unset PGPASSWORD
			printf '\nPostgreSQL init process complete; ready for start up.\n\n'
		else
			printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
		fi
		# The server needs neither value; keep them out of PID 1's environment (/proc/1/environ).
		unset POSTGRES_PASSWORD PGPASSWORD
	fi

	exec "$@"
}

main "$@"
