#!/bin/sh
# The roles and the database of docs/deploy.md, made once by PostgreSQL's superuser: the
# owner role owns the database and its schema and runs the migrations (`coldtrace db
# upgrade`, which then grants the application its rights); the application's role owns
# nothing and is no superuser, so it can neither rewrite the audit log nor switch its
# triggers off. docker-compose.yml runs this on the first start of an empty volume
# (/docker-entrypoint-initdb.d); by hand: PGHOST=... PGPORT=... sh deploy/postgresql/roles.sh
#
#   POSTGRES_USER                the superuser to connect as (default postgres)
#   COLDTRACE_DB_OWNER_PASSWORD  password of the owner role (required)
#   COLDTRACE_DB_APP_PASSWORD    password of the application's role (required)
#   COLDTRACE_DB_NAME, COLDTRACE_DB_OWNER, COLDTRACE_DB_APP
#                                names (default coldtrace, coldtrace_owner, coldtrace)
set -eu
: "${COLDTRACE_DB_OWNER_PASSWORD:?set COLDTRACE_DB_OWNER_PASSWORD}"
: "${COLDTRACE_DB_APP_PASSWORD:?set COLDTRACE_DB_APP_PASSWORD}"
db=${COLDTRACE_DB_NAME:-coldtrace}
owner=${COLDTRACE_DB_OWNER:-coldtrace_owner}
app=${COLDTRACE_DB_APP:-coldtrace}
psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
  -v db="$db" -v owner="$owner" -v app="$app" \
  -v owner_pw="$COLDTRACE_DB_OWNER_PASSWORD" -v app_pw="$COLDTRACE_DB_APP_PASSWORD" <<'SQL'
CREATE ROLE :"owner" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE :"app" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';
CREATE DATABASE :"db" OWNER :"owner";
\connect :"db"
-- Before PostgreSQL 15 the public schema belongs to the superuser and anyone may create
-- in it: the owner role owns it, and the application's role creates nothing.
ALTER SCHEMA public OWNER TO :"owner";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL
