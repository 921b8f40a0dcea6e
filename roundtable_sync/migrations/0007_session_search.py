"""Trigram search indexes over session IDs, user IDs, explanations and tags.

See roundtable_sync/search.py for how queries use them.
"""

from django.db import migrations

FTS_TABLE = "roundtable_sync_session_search"
# The document of the session row NEW: its IDs, explanation and text tags.
SQLITE_DOCUMENT = (
    "NEW.session_id || char(10) || NEW.user_id || char(10) "
    "|| COALESCE(NEW.risk_explanation, '') || char(10) "
    "|| COALESCE((SELECT group_concat(value, char(10)) FROM json_each(NEW.tags) "
    "WHERE type = 'text'), '')"
)
SQLITE_FORWARD = [
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(document, tokenize='trigram')",
    f"""CREATE TRIGGER {FTS_TABLE}_insert AFTER INSERT ON roundtable_sync_session
    BEGIN
        INSERT INTO {FTS_TABLE}(rowid, document) VALUES (NEW.rowid, {SQLITE_DOCUMENT});
    END""",
    f"""CREATE TRIGGER {FTS_TABLE}_delete AFTER DELETE ON roundtable_sync_session
    BEGIN
        DELETE FROM {FTS_TABLE} WHERE rowid = OLD.rowid;
    END""",
    f"""CREATE TRIGGER {FTS_TABLE}_update
    AFTER UPDATE OF session_id, user_id, risk_explanation, tags
    ON roundtable_sync_session
    BEGIN
        DELETE FROM {FTS_TABLE} WHERE rowid = OLD.rowid;
        INSERT INTO {FTS_TABLE}(rowid, document) VALUES (NEW.rowid, {SQLITE_DOCUMENT});
    END""",
    # Backfill: the same document for every stored session.
    f"""INSERT INTO {FTS_TABLE}(rowid, document)
    SELECT rowid, {SQLITE_DOCUMENT.replace("NEW.", "")}
    FROM roundtable_sync_session""",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER {FTS_TABLE}_insert",
    f"DROP TRIGGER {FTS_TABLE}_delete",
    f"DROP TRIGGER {FTS_TABLE}_update",
    f"DROP TABLE {FTS_TABLE}",
]
# Must stay identical to SEARCH_DOCUMENT_PG in roundtable_sync/search.py.
POSTGRES_FORWARD = [
    # Trusted since PostgreSQL 13: any user allowed to create objects in the
    # database may install it.
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """CREATE INDEX roundtable_sync_session_search
    ON roundtable_sync_session USING gin (
        UPPER(("session_id" || chr(10) || "user_id" || chr(10)
        || COALESCE("risk_explanation", '') || chr(10) || "tags"::text))
        gin_trgm_ops
    )""",
]
POSTGRES_BACKWARD = ["DROP INDEX roundtable_sync_session_search"]


def run(statements_by_vendor):
    def operation(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return operation


class Migration(migrations.Migration):
    dependencies = [
        ("roundtable_sync", "0006_request_slot"),
    ]

    operations = [
        migrations.RunPython(
            run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
