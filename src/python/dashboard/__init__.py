"""Tickstream's Streamlit dashboard: live market view, history from the dbt marts, pipeline health."""
