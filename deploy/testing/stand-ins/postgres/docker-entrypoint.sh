#!/bin/sh
# The official postgres image's start, as far as compose.yaml uses it: as root, the data directory
# made the postgres user's; then, as that user, a cluster made on the first start (its superuser
# POSTGRES_USER with POSTGRES_PASSWORD, or the file POSTGRES_PASSWORD_FILE names), the init
# scripts run against it while it listens on its socket only, and the server started for good.
set -eu

if [ "$(id -u)" = 0 ]; then
    install -d -o postgres -g postgres -m 0700 "$PGDATA"
    install -d -o postgres -g postgres -m 2775 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        POSTGRES_PASSWORD=$(cat -- "$POSTGRES_PASSWORD_FILE")
    fi
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set}"
    export POSTGRES_USER="${POSTGRES_USER:-postgres}"
    password_file=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$password_file"
    initdb --username="$POSTGRES_USER" --pwfile="$password_file" --auth-local=trust \
        --auth-host=scram-sha-256 >/dev/null
    rm -f "$password_file"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait start >/dev/null
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sh)
                echo "running $script"
                if [ -x "$script" ]; then "$script"; else . "$script"; fi
                ;;
            *.sql)
                echo "running $script"
                psql -v ON_ERROR_STOP=1 --no-psqlrc --username "$POSTGRES_USER" --dbname postgres -f "$script"
                ;;
        esac
    done
    pg_ctl --pgdata="$PGDATA" --mode=fast --wait stop >/dev/null
    echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
