-- PostgreSQL for guanhuai: run once as a superuser, then `alembic -c infra/alembic.ini upgrade head`.
--   psql -v app_password="'...'" -v reader_password="'...'" -f infra/postgres/setup.sql
CREATE ROLE guanhuai LOGIN PASSWORD :app_password;
CREATE ROLE guanhuai_reader LOGIN PASSWORD :reader_password;
CREATE DATABASE guanhuai OWNER guanhuai ENCODING 'UTF8' TEMPLATE template0;
\connect guanhuai
-- Reporting tools read the read models (report_*) and, for auditors, the log; they write nothing.
ALTER DEFAULT PRIVILEGES FOR ROLE guanhuai IN SCHEMA public GRANT SELECT ON TABLES TO guanhuai_reader;
GRANT CONNECT ON DATABASE guanhuai TO guanhuai_reader;
GRANT USAGE ON SCHEMA public TO guanhuai_reader;
-- The events table refuses UPDATE, DELETE and TRUNCATE by trigger (created with the table); in
-- addition, once migrations have run, take those rights away from the application role:
--   REVOKE UPDATE, DELETE, TRUNCATE ON events FROM guanhuai;
