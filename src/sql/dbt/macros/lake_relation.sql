{#-
  The lake's committed rows of one table, as one relation (docs/analytics.md, "Reading the lake").

  For every hour of the run's interval:
    - the hour has a manifest _manifests/compacted/<table>/date=D/hour=H.json
        -> exactly the objects the manifest lists (compacted/<table>/date=D/hour=H/<run_id>/...), plus the
           hour's stream objects that the manifest does not list as `replaced` (arrived after compaction,
           folded in by the next one) - the reader rule of tickstream.lake.committed_hour;
           replaced stream objects (deleted only after a grace period) and compacted objects of
           superseded or unpublished runs are never read;
    - otherwise -> the hour's stream objects stream/<table>/date=D/hour=H/*.parquet.

  Two phases: run_query lists manifests and stream objects (one LIST per prefix and day) and reads the
  manifests; the relation then names an explicit file list: the manifests' objects, the late stream objects
  of compacted hours and one glob per open hour. DuckDB opens only those files, instead of scanning every object of the table and filtering on
  `filename` (a filter on a join result does not prune files), and each hour is decided once per run.
-#}

{% macro lake_table_columns(table) -%}
  {%- set columns = {
    'ticks': [
      ('schema_version', 'integer'), ('symbol', 'varchar'), ('seq', 'bigint'), ('ts_us', 'bigint'),
      ('price', 'double'), ('bid', 'double'), ('ask', 'double'), ('size', 'bigint'),
      ('kafka_partition', 'integer'), ('kafka_offset', 'bigint'),
    ],
    'bars_1m': [
      ('symbol', 'varchar'), ('window_start', 'timestamp with time zone'),
      ('window_end', 'timestamp with time zone'), ('open', 'double'), ('high', 'double'), ('low', 'double'),
      ('close', 'double'), ('volume', 'bigint'), ('vwap', 'double'), ('trade_count', 'bigint'),
    ],
  } -%}
  {%- if table not in columns -%}
    {{ exceptions.raise_compiler_error("unknown lake table " ~ table) }}
  {%- endif -%}
  {{ return(columns[table]) }}
{%- endmacro %}


{% macro lake_files(table) -%}
  {#-
    Phase 1: the paths (and globs) to read for the run's interval: {'objects': [...], 'manifest_hours': n,
    'open_hours': n, 'late_objects': n}. Two queries: list the manifests; then read them and list the
    stream objects, and let DuckDB compute manifest objects + late stream objects + one glob per open hour.
  -#}
  {%- set root = lake_root() -%}
  {%- set interval = run_interval() -%}
  {%- set stream_globs, manifest_globs = [], [] -%}
  {%- for day in (['*'] if interval is none else interval.dates) -%}
    {%- set date_dir = '*' if day == '*' else 'date=' ~ day -%}
    {%- do stream_globs.append(root ~ '/stream/' ~ table ~ '/' ~ date_dir ~ '/*/part-*.parquet') -%}
    {%- do manifest_globs.append(root ~ '/_manifests/compacted/' ~ table ~ '/' ~ date_dir ~ '/*.json') -%}
  {%- endfor -%}
  {%- set hour_of = "regexp_extract(%s, 'date=([0-9]{4}-[0-9]{2}-[0-9]{2})/hour=([0-9]{2})', ['day', 'hour'])" -%}

  {%- set manifest_paths = [] -%}
  {%- set listing_sql -%}
    {% for pattern in manifest_globs -%}
      select file from glob({{ sql_string(pattern) }}){% if not loop.last %} union all {% endif %}
    {%- endfor %}
    order by file
  {%- endset -%}
  {%- for row in run_query(listing_sql).rows -%}{%- do manifest_paths.append(row['file']) -%}{%- endfor -%}

  {%- set files_sql -%}
    with
    stream_files as (
      {% for pattern in stream_globs -%}
        select file, {{ hour_of % 'file' }} as part_hour from glob({{ sql_string(pattern) }})
        where regexp_matches(file, '/part-[0-9a-f]{8}-e[0-9]{12}(-p[0-9]{3})?\.parquet$')
        {% if not loop.last %} union all {% endif %}
      {%- endfor %}
    ),
    {% if manifest_paths -%}
    manifests as (
      select
        {{ hour_of % 'filename' }} as part_hour,
        case when json_extract(json, '$.version')::integer = 1 then json
          else error('unsupported compaction manifest version in ' || filename) end as manifest
      from read_json_objects(
        [{% for path in manifest_paths %}{{ sql_string(path) }}{% if not loop.last %}, {% endif %}{% endfor %}],
        filename = true
      )
    ),
    {%- else -%}
    manifests as (select null::struct(day varchar, hour varchar) as part_hour, null::json as manifest where false),
    {%- endif %}
    manifest_objects as (
      select part_hour, unnest(json_extract_string(manifest, '$.objects[*].key')) as key from manifests
    ),
    replaced as (
      select {{ sql_string(root ~ '/') }} || unnest(json_extract_string(manifest, '$.replaced[*]')) as file
      from manifests
    ),
    paths as (
      -- hours with a manifest: its objects ...
      select 'compacted' as kind,
        case when key like '%://%' or key like '/%' then key else {{ sql_string(root ~ '/') }} || key end as path
      from manifest_objects
      union all
      -- ... plus the hour's stream objects it does not list as replaced (arrived after compaction)
      select 'late', file
      from stream_files
      where part_hour in (select part_hour from manifests)
        and file not in (select file from replaced)
      union all
      -- hours without a manifest: the hour's stream objects
      select distinct 'open',
        {{ sql_string(root ~ '/stream/' ~ table ~ '/date=') }} || part_hour.day || '/hour=' || part_hour.hour
          || '/part-*.parquet'
      from stream_files
      where part_hour not in (select part_hour from manifests)
    )
    select kind, path from paths order by kind, path
  {%- endset -%}

  {%- set objects, counts = [], {'compacted': 0, 'late': 0, 'open': 0} -%}
  {%- for row in run_query(files_sql).rows -%}
    {%- do objects.append(row['path']) -%}
    {%- do counts.update({row['kind']: counts[row['kind']] + 1}) -%}
  {%- endfor -%}
  {%- do log('lake ' ~ table ~ ': ' ~ manifest_paths | length ~ ' compacted hours (' ~ counts.compacted
      ~ ' objects, ' ~ counts.late ~ ' late stream objects), ' ~ counts.open ~ ' open hours', info=true) -%}
  {{ return({'objects': objects, 'manifest_hours': manifest_paths | length, 'open_hours': counts.open,
             'late_objects': counts.late}) }}
{%- endmacro %}


{% macro lake_relation_sql(table) -%}
  {#- Phase 2: a SELECT of the table's committed rows with partition columns lake_date, lake_hour. -#}
  {%- set columns = lake_table_columns(table) -%}
  {%- set files = lake_files(table) -%}
  {%- if files.objects -%}
    select
      {% for name, type in columns -%}
      cast({{ name }} as {{ type }}) as {{ name }},
      {% endfor -%}
      cast(date as date) as lake_date,
      cast(hour as integer) as lake_hour
    from read_parquet(
      [{% for path in files.objects %}{{ sql_string(path) }}{% if not loop.last %}, {% endif %}{% endfor %}],
      hive_partitioning = true,
      hive_types = {'date': varchar, 'hour': varchar},
      union_by_name = true
    )
  {%- else -%}
    {#- Nothing in the interval yet: an empty relation of the same shape. -#}
    select
      {% for name, type in columns -%}
      cast(null as {{ type }}) as {{ name }},
      {% endfor -%}
      cast(null as date) as lake_date,
      cast(null as integer) as lake_hour
    where false
  {%- endif -%}
{%- endmacro %}


{% macro create_lake_views() -%}
  {#- on-run-start: (re)create lake.ticks and lake.bars_1m for this run's interval. -#}
  {%- if execute -%}
    {%- set statements = ['create schema if not exists ' ~ target.database ~ '.lake'] -%}
    {%- for table in ['ticks', 'bars_1m'] -%}
      {%- set relation = api.Relation.create(database=target.database, schema='lake', identifier=table) -%}
      {%- do statements.append('create or replace view ' ~ relation ~ ' as ' ~ lake_relation_sql(table)) -%}
    {%- endfor -%}
    {{ return(statements | join(';\n')) }}
  {%- else -%}
    {{ return('select 1') }}
  {%- endif -%}
{%- endmacro %}
