"""Multi-row INSERT and upsert through the database cursor.

The store writes about fifteen check rows and a dozen event rows per session.
``bulk_create`` builds a model instance per row and compiles every value
through its field, which took most of a first store's time in profiles.
These helpers prepare only the values that need it (times, JSON), the same
way the ORM does, and hand all rows to ``executemany``.
"""

from django.db import connections, router

# Field types whose Python value differs from what the driver takes.
_PREPARED_TYPES = {"DateTimeField", "JSONField"}


def insert(model, fields, rows, *, conflict=None, update=()):
    """Insert ``rows``, dicts keyed by the names (attnames) in ``fields``.

    With ``conflict`` (a unique field name), a row whose value already exists
    updates the ``update`` fields of the stored row instead. SQLite 3.24+ and
    PostgreSQL both accept this ON CONFLICT syntax.
    """
    if not rows:
        return
    # The connection itself, not the django.db.connection proxy, whose every
    # attribute access looks up the thread's connection again.
    connection = connections[router.db_for_write(model)]
    meta = model._meta
    columns = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(meta.db_table)} "
        f"({', '.join(quote(f.column) for f in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )
    if conflict is not None:
        assignments = ", ".join(
            f"{quote(c)} = EXCLUDED.{quote(c)}"
            for c in (meta.get_field(name).column for name in update)
        )
        sql += (
            f" ON CONFLICT ({quote(meta.get_field(conflict).column)}) "
            f"DO UPDATE SET {assignments}"
        )
    prepared = {
        name: field.get_db_prep_save
        for name, field in zip(fields, columns, strict=True)
        if field.get_internal_type() in _PREPARED_TYPES
    }
    plain = [name for name in fields if name not in prepared]
    params = []
    for row in rows:
        values = {name: row[name] for name in plain}
        for name, prepare in prepared.items():
            values[name] = prepare(row[name], connection)
        params.append(tuple(values[name] for name in fields))
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)
