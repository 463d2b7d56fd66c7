"""Persistence: the SQL schema (SQLModel), sessions, migrations and the content-addressed blob store."""
