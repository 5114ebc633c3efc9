"""Compaction of closed lake hours: many small stream objects -> few large ones, committed by manifest."""
