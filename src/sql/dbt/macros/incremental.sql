{% macro replace_interval(date_column) -%}
  {#-
    pre-hook of the incremental marts (incremental_strategy='append'): on an incremental run, first delete
    the run's days, so the insert that follows replaces them. Re-running an interval is idempotent, also when
    a day now has fewer rows (or none). Without an interval the whole table is replaced. Hooks run inside
    the model's transaction: readers see the old or the new days, never neither.
  -#}
  {%- if is_incremental() -%}
    delete from {{ this }} where {{ interval_filter(date_column) }}
  {%- else -%}
    select 1
  {%- endif -%}
{%- endmacro %}
