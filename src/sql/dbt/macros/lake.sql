{#-
  Where the marts are published and which interval a run covers. (The lake's tables are read through the
  Iceberg catalog: macros/lake_views.sql.)
-#}

{% macro lake_root() -%}
  {#-
    Where mart exports (marts/<model>/data.parquet) go: TICKSTREAM_LAKE_ROOT (s3://bucket/prefix or a
    local directory; analytics.run always sets it), else s3://$TICKSTREAM_S3_BUCKET.
  -#}
  {%- set root = env_var('TICKSTREAM_LAKE_ROOT', '') -%}
  {%- if root == '' -%}
    {%- if target.name == 'local' -%}
      {{ exceptions.raise_compiler_error("target 'local' needs TICKSTREAM_LAKE_ROOT (the lake directory)") }}
    {%- endif -%}
    {%- set root = 's3://' ~ env_var('TICKSTREAM_S3_BUCKET', 'tickstream-lake') -%}
  {%- endif -%}
  {{ return(root.rstrip('/')) }}
{%- endmacro %}


{% macro _parse_instant(value) -%}
  {#- An ISO date or timestamp as a naive UTC datetime (a timestamp with an offset is converted to UTC). -#}
  {%- set text = value | string | trim -%}
  {%- if text | length == 10 -%}{%- set text = text ~ 'T00:00:00' -%}{%- endif -%}
  {%- set parsed = modules.datetime.datetime.fromisoformat(text.replace('Z', '+00:00')) -%}
  {%- if parsed.tzinfo is not none -%}
    {%- set parsed = parsed.astimezone(modules.pytz.utc) -%}
  {%- endif -%}
  {{ return(parsed.replace(tzinfo=none)) }}
{%- endmacro %}


{% macro run_interval() -%}
  {#-
    The run's interval from vars `start`/`end` ([start, end), UTC), widened to whole UTC days:
    none (the whole lake) or {'start': 'YYYY-MM-DD', 'end': 'YYYY-MM-DD' (exclusive)}.
  -#}
  {%- set start, end = var('start', none), var('end', none) -%}
  {%- if start is none and end is none -%}{{ return(none) }}{%- endif -%}
  {%- if start is none or end is none -%}
    {{ exceptions.raise_compiler_error("vars start and end go together, got start=" ~ start ~ " end=" ~ end) }}
  {%- endif -%}
  {%- set start_at, end_at = _parse_instant(start), _parse_instant(end) -%}
  {%- if end_at <= start_at -%}
    {{ exceptions.raise_compiler_error("var end (" ~ end ~ ") must be after start (" ~ start ~ ")") }}
  {%- endif -%}
  {%- set day = modules.datetime.timedelta(days=1) -%}
  {%- set first = start_at.date() -%}
  {%- set last = end_at.date() if end_at.time() == modules.datetime.time(0) else end_at.date() + day -%}
  {{ return({'start': first.isoformat(), 'end': last.isoformat()}) }}
{%- endmacro %}


{% macro interval_filter(date_column) -%}
  {#- SQL predicate on a UTC date column keeping the run's days (true when the run covers the whole lake). -#}
  {%- set interval = run_interval() -%}
  {%- if interval is none -%}true
  {%- else -%}{{ date_column }} >= date '{{ interval.start }}' and {{ date_column }} < date '{{ interval.end }}'
  {%- endif -%}
{%- endmacro %}


{% macro interval_time_filter(timestamptz_column) -%}
  {#-
    SQL predicate on a timestamp-with-time-zone column keeping the run's days (true for the whole lake).
    On a lake table's partition column (ticks.event_time, bars_1m.window_start) iceberg_scan prunes the
    data files outside the interval by their partition and column statistics.
  -#}
  {%- set interval = run_interval() -%}
  {%- if interval is none -%}true
  {%- else -%}
    {{ timestamptz_column }} >= timestamptz '{{ interval.start }} 00:00:00+00'
    and {{ timestamptz_column }} < timestamptz '{{ interval.end }} 00:00:00+00'
  {%- endif -%}
{%- endmacro %}


{% macro sql_string(value) -%}
  '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
