{#-
  Where the lake is and which interval a run covers.
-#}

{% macro lake_root() -%}
  {#- s3://$TICKSTREAM_S3_BUCKET, or TICKSTREAM_DBT_LAKE_ROOT (s3://bucket/prefix or a local directory). -#}
  {%- set root = env_var('TICKSTREAM_DBT_LAKE_ROOT', '') -%}
  {%- if root == '' -%}
    {%- if target.name == 'local' -%}
      {{ exceptions.raise_compiler_error("target 'local' needs TICKSTREAM_DBT_LAKE_ROOT (the lake directory)") }}
    {%- endif -%}
    {%- set root = 's3://' ~ env_var('TICKSTREAM_S3_BUCKET', 'tickstream-lake') -%}
  {%- endif -%}
  {{ return(root.rstrip('/')) }}
{%- endmacro %}


{% macro _parse_instant(value) -%}
  {%- set text = value | string | trim -%}
  {%- if text | length == 10 -%}{%- set text = text ~ 'T00:00:00' -%}{%- endif -%}
  {{ return(modules.datetime.datetime.fromisoformat(text.replace('Z', '+00:00')).replace(tzinfo=none)) }}
{%- endmacro %}


{% macro run_interval() -%}
  {#-
    The run's interval from vars `start`/`end` ([start, end), UTC), widened to whole UTC days:
    none (the whole lake) or {'start': date, 'end': date (exclusive), 'dates': ['YYYY-MM-DD', ...]}.
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
  {%- set dates = [] -%}
  {%- for offset in range((last - first).days) -%}
    {%- do dates.append((first + day * offset).isoformat()) -%}
  {%- endfor -%}
  {{ return({'start': first.isoformat(), 'end': last.isoformat(), 'dates': dates}) }}
{%- endmacro %}


{% macro interval_filter(date_column) -%}
  {#- SQL predicate keeping the run's days (true when the run covers the whole lake). -#}
  {%- set interval = run_interval() -%}
  {%- if interval is none -%}true
  {%- else -%}{{ date_column }} >= date '{{ interval.start }}' and {{ date_column }} < date '{{ interval.end }}'
  {%- endif -%}
{%- endmacro %}


{% macro sql_string(value) -%}
  '{{ value | string | replace("'", "''") }}'
{%- endmacro %}
