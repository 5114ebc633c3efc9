{#- Rows for which `expression` is false (dbt_utils.expression_is_true, which `dbt deps` cannot fetch here). -#}
{% test expression_is_true(model, expression, where_sql=none) %}
select *
from {{ model }}
where not ({{ expression }})
{%- if where_sql %} and ({{ where_sql }}){% endif %}
{% endtest %}
