#!/bin/sh
# Run once by the postgres image when its data volume is empty, before the server listens on TCP:
# init-databases.sql (mounted at the path below by compose.yaml) with each service's password read
# from the file its *_FILE variable names (the keys job makes them), which a .sql file alone cannot
# read. A missing, unreadable or empty password file stops the first start.

# The contents of the file that the variable named $1 names, without a trailing line end.
password_from() {
    eval "password_file=\${$1:-}"
    if [ -z "$password_file" ]; then
        echo "$1 is not set" >&2
        return 1
    fi
    password=$(cat -- "$password_file") || return 1
    if [ -z "$password" ]; then
        echo "$1: $password_file is empty" >&2
        return 1
    fi
    printf '%s' "$password"
}

orders_password=$(password_from POSTGRES_ORDERS_PASSWORD_FILE) || exit 1
delivery_password=$(password_from POSTGRES_DELIVERY_PASSWORD_FILE) || exit 1
web_password=$(password_from POSTGRES_WEB_PASSWORD_FILE) || exit 1

psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" --dbname postgres \
    -v orders_password="$orders_password" \
    -v delivery_password="$delivery_password" \
    -v web_password="$web_password" \
    --file /etc/deliveryhub/init-databases.sql
