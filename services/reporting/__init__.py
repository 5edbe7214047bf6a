"""Reporting: township and annual read models from the log, reports as of any date, and the ways
other tools read them (SQL tables, CLI, HTTP API, dashboard)."""
