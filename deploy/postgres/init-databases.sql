-- Run once by the postgres image when its data volume is empty: one database per service, as each
-- service owns its own and reads no other's. The migration jobs then create the tables.
CREATE DATABASE orders;
CREATE DATABASE delivery;
CREATE DATABASE web;
