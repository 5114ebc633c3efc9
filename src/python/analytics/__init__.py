"""Analytics: the dbt project in src/sql/dbt run on DuckDB over the Parquet lake (docs/analytics.md)."""
