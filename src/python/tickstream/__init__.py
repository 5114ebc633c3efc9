"""Tickstream: shared contracts, configuration and adapters used by every component."""
