{#-
  The lake's source relations (docs/analytics.md, "Reading the lake"): Apache Iceberg tables read with
  DuckDB's iceberg_scan, pinned to one snapshot per run.
-#}

{% macro lake_tables() -%}
  {#- The lake tables the project reads (names in tickstream.lake.TABLES and in the catalog). -#}
  {{ return(['ticks', 'bars_1m']) }}
{%- endmacro %}


{% macro create_lake_views() -%}
  {#-
    on-run-start: (re)create lake.<table> for every lake table as iceberg_scan('<metadata location>').

    The location is the table's current metadata file, read from the Iceberg catalog once per run by
    tickstream_lake_table(name) (registered by the analytics.duckdb_lake plugin). A metadata file never
    changes, so every model and test of the run reads the same snapshot, whatever the streaming job or
    compaction commit meanwhile; the next run picks up the new snapshots. A table without a snapshot yet
    reads as zero rows with the table's columns. Filters on the partition column (event_time, window_start)
    let iceberg_scan skip the data files outside a run's interval.
  -#}
  {%- if execute -%}
    {%- set tables = lake_tables() -%}
    {%- set lookup -%}
      select
      {%- for table in tables %}
        tickstream_lake_table({{ sql_string(table) }}) as {{ table }}{% if not loop.last %},{% endif %}
      {%- endfor %}
    {%- endset -%}
    {%- set locations = run_query(lookup).rows[0] -%}
    {%- set statements = ['create schema if not exists ' ~ target.database ~ '.lake'] -%}
    {%- for table in tables -%}
      {%- set relation = api.Relation.create(database=target.database, schema='lake', identifier=table) -%}
      {%- do log('lake ' ~ table ~ ': ' ~ locations[table], info=true) -%}
      {%- do statements.append(
          'create or replace view ' ~ relation ~ ' as select * from iceberg_scan(' ~ sql_string(locations[table]) ~ ')'
      ) -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
  {%- else -%}
    {{ return('select 1') }}
  {%- endif -%}
{%- endmacro %}
