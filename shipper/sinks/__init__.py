"""Sinks: elasticsearch (bulk), the disk spool behind it."""
