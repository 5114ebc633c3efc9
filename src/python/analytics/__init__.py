"""Analytics: the dbt project in src/sql/dbt, run on DuckDB over the lake's Iceberg tables.

See docs/analytics.md.
"""
