{% macro export_mart() -%}
  {#-
    post-hook of every mart: publish the whole table as ONE Parquet object <lake>/marts/<model>/data.parquet,
    which the dashboard reads. On S3 an object appears whole when its upload completes, so readers see the
    previous or the new version of a mart, never a mix; locally DuckDB writes a temporary file and renames it.
  -#}
  {%- if execute -%}
    {%- set directory = lake_root() ~ '/marts/' ~ this.identifier -%}
    select tickstream_make_dirs({{ sql_string(directory) }});
    copy (select * from {{ this }}) to {{ sql_string(directory ~ '/data.parquet') }}
      (format parquet, compression zstd)
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
