{#- Market arithmetic used by several models. -#}

{% macro utc_timestamp(timestamptz) -%}
  {#- A timestamp with time zone as a plain UTC timestamp (the project's convention for *_at columns). -#}
  make_timestamp(epoch_us({{ timestamptz }}))
{%- endmacro %}

{% macro safe_divide(numerator, denominator) -%}
  case when {{ denominator }} <> 0 then {{ numerator }} / {{ denominator }} end
{%- endmacro %}

{% macro spread_bps(bid, ask) -%}
  {#- Quoted spread in basis points of the mid price. -#}
  case when {{ bid }} > 0 and {{ ask }} >= {{ bid }}
    then ({{ ask }} - {{ bid }}) / (({{ ask }} + {{ bid }}) / 2) * 10000 end
{%- endmacro %}
