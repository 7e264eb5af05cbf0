#!/bin/sh
# Run once by the postgres image when its data volume is empty, before the server listens on TCP:
# init-databases.sql (mounted at the path below by compose.yaml) with each service's password from
# the environment, which a .sql file alone cannot read. A missing password stops the first start.
psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" --dbname postgres \
    -v orders_password="${POSTGRES_ORDERS_PASSWORD:?is not set}" \
    -v delivery_password="${POSTGRES_DELIVERY_PASSWORD:?is not set}" \
    -v web_password="${POSTGRES_WEB_PASSWORD:?is not set}" \
    --file /etc/deliveryhub/init-databases.sql
