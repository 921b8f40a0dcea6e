"""Helpers for the dashboard's raw SQL queries."""

from django.db import connection


def datetime_from_db(value):
    """Return a datetime value that a raw query read, as the ORM would return it.

    SQLite returns the stored text, which Django's own converter parses into
    an aware datetime. PostgreSQL returns an aware datetime already.
    """
    if connection.vendor == "sqlite":
        return connection.ops.convert_datetimefield_value(value, None, connection)
    return value
