-- The warehouse database, its schemas and roles. Run once by docker/postgres/init.sh (as the
-- superuser, in the warehouse database); the tests apply the same file to a throwaway cluster.
-- psql variables: loader_password, reader_password.
\set ON_ERROR_STOP on

-- The loader role: dlt and dbt write with it; it owns every schema of the warehouse.
select format('create role elt login password %L', :'loader_password')
where not exists (select from pg_roles where rolname = 'elt') \gexec
select format('alter role elt with login password %L', :'loader_password') \gexec

-- Metabase's role: reads the schema marts and nothing else.
select format('create role metabase_reader login password %L', :'reader_password')
where not exists (select from pg_roles where rolname = 'metabase_reader') \gexec
select format('alter role metabase_reader with login password %L', :'reader_password') \gexec

select format('grant all on database %I to elt', current_database()) \gexec
select format('grant connect on database %I to metabase_reader', current_database()) \gexec
revoke all on schema public from public;
grant all on schema public to elt;

create schema if not exists raw_shop authorization elt;
create schema if not exists raw_sales authorization elt;
create schema if not exists staging authorization elt;
create schema if not exists intermediate authorization elt;
create schema if not exists snapshots authorization elt;
create schema if not exists marts authorization elt;

grant usage on schema marts to metabase_reader;
grant select on all tables in schema marts to metabase_reader;
-- dbt re-creates mart tables on every build: future tables of elt in marts are readable too.
alter default privileges for role elt in schema marts grant select on tables to metabase_reader;
