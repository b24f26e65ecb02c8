-- Run once by the postgres image at first start (/docker-entrypoint-initdb.d): one database per
-- service, as on AWS (each service migrates its own at startup).
CREATE DATABASE ledger;
CREATE DATABASE consolidation;
