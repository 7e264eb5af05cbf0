-- Run once by the postgres image when its data volume is empty, through init-databases.sh, which
-- gives psql the services' passwords from the environment. Each service owns its database and reads
-- no other's: it logs in as a role of its own, which owns that database alone and may connect to no
-- other. The migration jobs then create the tables as that role. The superuser the image makes
-- (POSTGRES_USER) stays the administrator's; no service connects as it.
CREATE ROLE orders LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'orders_password';
CREATE ROLE delivery LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'delivery_password';
CREATE ROLE web LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'web_password';

CREATE DATABASE orders OWNER orders;
CREATE DATABASE delivery OWNER delivery;
CREATE DATABASE web OWNER web;

-- Every role may connect to a new database (and make temporary tables there) until PUBLIC loses
-- that right; its owner keeps it.
REVOKE CONNECT, TEMPORARY ON DATABASE orders FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE delivery FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE web FROM PUBLIC;
