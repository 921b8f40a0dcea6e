"""Each session's export cells, kept in time order by database triggers.

An export of every session reads sessions in time order. The session table
keeps rows in insertion order beside their multi-kilobyte ``raw`` payloads,
so reading a million of them in time order is a million random page reads.
The table ``roundtable_sync_session_export`` keeps, per session, only what
the CSV needs, keyed by (session_time, session_id):

- ``head``: the session's cells up to and including the tags, as finished
  CSV text (neutralized and quoted as ``export_rows.csv_cell`` does it);
- ``decision``: ``,kind,analyst,time`` of the newest decision in the same
  form, or NULL;
- ``biometric_checks`` and ``device_checks``: each group's part of the
  checks map as JSON text, which Python turns into cells because the
  export's check columns depend on the sessions it covers. A million
  sessions hold far fewer distinct maps per group than whole maps (about
  12,000 and 850 against 210,000 in the benchmark's data), so Python's
  per-group caches of formatted cells rarely miss.

On SQLite the table is WITHOUT ROWID, so its rows are stored in key order
and an export reads them sequentially. Triggers on the session table keep it
in step with every write path: inserts, updates of an exported column,
deletes and, on PostgreSQL, TRUNCATE. Triggers on the decision table keep
the ``decision`` cells.

NOTE: the migrations install the triggers from the SQL below. A change to
the cell rules needs a new migration that re-creates the triggers and
rebuilds the table, and a migration that makes Django rebuild the session
table on SQLite drops the triggers, so it must create them again.
"""

from roundtable_sync.formulas import LEADING_WHITESPACE

TABLE = "roundtable_sync_session_export"
SESSION_TABLE = "roundtable_sync_session"
DECISION_TABLE = "reviews_decision"
# Decision columns whose change alters the newest decision's cells.
DECISION_COLUMNS = ["session_id", "kind", "decided_by_label", "decided_at"]
# Session columns whose change alters the export row.
EXPORTED_COLUMNS = [
    "user_id",
    "session_time",
    "session_time_source",
    "risk_score",
    "recommended_action",
    "risk_explanation",
    "tags",
    "checks",
]

_COLUMNS = [
    "session_time",
    "session_id",
    "head",
    "decision",
    "biometric_checks",
    "device_checks",
]
# The check groups, in the order of their columns after the head.
CHECK_GROUPS = ["biometric", "device"]

_WHITESPACE_CODES = ", ".join(str(ord(char)) for char in LEADING_WHITESPACE)
# A GLOB pattern matching text with a comma, quote, CR or LF. SQLite computes
# this constant once per statement.
_SQLITE_SPECIAL = "'*[,\"' || char(13) || char(10) || ']*'"


def sqlite_cell(value):
    """Return SQLite SQL that formats the text ``value`` as csv_cell does."""
    neutral = (
        f"(CASE WHEN substr({value}, 1, 1) IN (char(9), char(13)) "
        f"OR substr(ltrim({value}, char({_WHITESPACE_CODES})), 1, 1) "
        "IN ('=', '+', '-', '@') "
        f"THEN '''' || {value} ELSE {value} END)"
    )
    quoted = f"'\"' || replace({neutral}, '\"', '\"\"') || '\"'"
    return (
        f"COALESCE(CASE WHEN {value} GLOB {_SQLITE_SPECIAL} "
        f"THEN {quoted} ELSE {neutral} END, '')"
    )


def sqlite_iso_time(value):
    # Django stores SQLite times as naive UTC text such as
    # "2026-06-14 17:35:52.924000", without the fraction when it is zero,
    # as datetime.isoformat() writes it.
    return f"replace({value}, ' ', 'T') || 'Z'"


def newest_decision(session_id, cell, iso_time):
    """Return SQL for ``,kind,analyst,time`` of the session's newest decision.

    The value is NULL when the session has no decision. ``cell`` and
    ``iso_time`` build the database's SQL for a text cell and a time cell.
    """
    cells = " || ',' || ".join(
        [cell("d.kind"), cell("d.decided_by_label"), iso_time("d.decided_at")]
    )
    return (
        f"(SELECT ',' || {cells} FROM {DECISION_TABLE} d "
        f"WHERE d.session_id = {session_id} "
        "ORDER BY d.decided_at DESC, d.id DESC LIMIT 1)"
    )


def _refresh_decision(row, cell, iso_time):
    """Return SQL that sets the export row's decision for ``row.session_id``."""
    return (
        f"UPDATE {TABLE} "
        f"SET decision = {newest_decision(f'{row}.session_id', cell, iso_time)} "
        f"WHERE session_id = {row}.session_id AND session_time = "
        f"(SELECT session_time FROM {SESSION_TABLE} "
        f"WHERE session_id = {row}.session_id)"
    )


def sqlite_head(row):
    """Return SQLite SQL for the head cells of the session row ``row``."""
    # NOTE: SQLite documents group_concat's order as arbitrary (3.44 adds
    # ORDER BY to it). It follows json_each's array order in practice, and
    # the export's tests compare tag cells with csv.writer's.
    tags = f"(SELECT group_concat(value, ';') FROM json_each({row}.tags))"
    cells = [
        sqlite_cell(f"{row}.user_id"),
        sqlite_cell(f"{row}.session_id"),
        sqlite_iso_time(f"{row}.session_time"),
        sqlite_cell(f"{row}.session_time_source"),
        sqlite_cell(f"CAST({row}.risk_score AS TEXT)"),
        sqlite_cell(f"{row}.recommended_action"),
        sqlite_cell(f"{row}.risk_explanation"),
        sqlite_cell(tags),
    ]
    return " || ',' || ".join(cells)


def _sqlite_decision(row):
    return newest_decision(f"{row}.session_id", sqlite_cell, sqlite_iso_time)


def _sqlite_refresh_decision(row):
    return _refresh_decision(row, sqlite_cell, sqlite_iso_time)


def _sqlite_insert(row):
    return (
        f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) "
        f"SELECT {row}.session_time, {row}.session_id, {sqlite_head(row)}, "
        f"{_sqlite_decision(row)}, "
        f"json_extract({row}.checks, '$.biometric'), "
        f"json_extract({row}.checks, '$.device')"
    )


SQLITE_FORWARD = [
    f"""CREATE TABLE {TABLE} (
        session_time datetime NOT NULL,
        session_id varchar(255) NOT NULL,
        head text NOT NULL,
        decision text,
        biometric_checks text,
        device_checks text,
        PRIMARY KEY (session_time, session_id)
    ) WITHOUT ROWID""",
    f"""CREATE TRIGGER {TABLE}_insert AFTER INSERT ON {SESSION_TABLE}
    BEGIN
        {_sqlite_insert("NEW")};
    END""",
    f"""CREATE TRIGGER {TABLE}_delete AFTER DELETE ON {SESSION_TABLE}
    BEGIN
        DELETE FROM {TABLE}
        WHERE session_time = OLD.session_time AND session_id = OLD.session_id;
    END""",
    f"""CREATE TRIGGER {TABLE}_update
    AFTER UPDATE OF {", ".join(EXPORTED_COLUMNS)} ON {SESSION_TABLE}
    BEGIN
        DELETE FROM {TABLE}
        WHERE session_time = OLD.session_time AND session_id = OLD.session_id;
        {_sqlite_insert("NEW")};
    END""",
    f"""CREATE TRIGGER {TABLE}_decision_insert AFTER INSERT ON {DECISION_TABLE}
    BEGIN
        {_sqlite_refresh_decision("NEW")};
    END""",
    f"""CREATE TRIGGER {TABLE}_decision_delete AFTER DELETE ON {DECISION_TABLE}
    BEGIN
        {_sqlite_refresh_decision("OLD")};
    END""",
    f"""CREATE TRIGGER {TABLE}_decision_update
    AFTER UPDATE OF {", ".join(DECISION_COLUMNS)} ON {DECISION_TABLE}
    BEGIN
        {_sqlite_refresh_decision("OLD")};
        {_sqlite_refresh_decision("NEW")};
    END""",
    f"{_sqlite_insert('s')} FROM {SESSION_TABLE} s",
]
SQLITE_BACKWARD = [
    f"DROP TRIGGER {TABLE}_insert",
    f"DROP TRIGGER {TABLE}_delete",
    f"DROP TRIGGER {TABLE}_update",
    f"DROP TRIGGER {TABLE}_decision_insert",
    f"DROP TRIGGER {TABLE}_decision_delete",
    f"DROP TRIGGER {TABLE}_decision_update",
    f"DROP TABLE {TABLE}",
]

# The PostgreSQL cell rules are SQL functions, shared by the session and the
# decision triggers.
POSTGRES_CELL_FUNCTION = "roundtable_sync_csv_cell"
POSTGRES_TIME_FUNCTION = "roundtable_sync_csv_time"
_POSTGRES_WHITESPACE = " || ".join(f"chr({ord(char)})" for char in LEADING_WHITESPACE)


def _postgres_neutral(value):
    return (
        f"CASE WHEN left({value}, 1) IN (chr(9), chr(13)) "
        f"OR left(ltrim({value}, {_POSTGRES_WHITESPACE}), 1) IN ('=', '+', '-', '@') "
        f"THEN '''' || {value} ELSE {value} END"
    )


def postgres_head(row):
    """Return PostgreSQL SQL for the head cells of the session row ``row``."""
    tags = (
        "(SELECT string_agg(t.value, ';' ORDER BY t.position) "
        f"FROM jsonb_array_elements_text({row}.tags) WITH ORDINALITY "
        "AS t(value, position))"
    )
    values = [
        f"{row}.user_id",
        f"{row}.session_id",
        None,
        f"{row}.session_time_source",
        f"CAST({row}.risk_score AS text)",
        f"{row}.recommended_action",
        f"{row}.risk_explanation",
        tags,
    ]
    cells = [
        f"{POSTGRES_TIME_FUNCTION}({row}.session_time)"
        if value is None
        else f"{POSTGRES_CELL_FUNCTION}({value})"
        for value in values
    ]
    return " || ',' || ".join(cells)


def _postgres_cell(value):
    return f"{POSTGRES_CELL_FUNCTION}({value})"


def _postgres_time(value):
    return f"{POSTGRES_TIME_FUNCTION}({value})"


def _postgres_refresh_decision(row):
    # The session row's lock makes the decision wait for a write of the
    # session in progress, which replaces the export row. The UPDATE after
    # it then reads with a new snapshot, which contains that row and every
    # decision committed before it. Without the lock it would update a
    # deleted row or write an older decision over a newer one.
    lock = (
        f"PERFORM 1 FROM {SESSION_TABLE} "
        f"WHERE session_id = {row}.session_id FOR NO KEY UPDATE"
    )
    return f"{lock};\n{_refresh_decision(row, _postgres_cell, _postgres_time)}"


def _postgres_insert(row):
    decision = newest_decision(f"{row}.session_id", _postgres_cell, _postgres_time)
    return (
        f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}) "
        f"SELECT {row}.session_time, {row}.session_id, {postgres_head(row)}, "
        f"{decision}, "
        f"({row}.checks -> 'biometric')::text, ({row}.checks -> 'device')::text"
    )


def _postgres_row_function(name, on_old, on_new):
    """Return a row trigger function running ``on_old`` for the old row of an
    UPDATE or DELETE, then ``on_new`` for the new row of an INSERT or UPDATE.
    """
    return f"""CREATE FUNCTION {name}() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            {on_old};
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            {on_new};
        END IF;
        RETURN NULL;
    END
    $$"""


POSTGRES_FORWARD = [
    # Neutralizes a formula prefix (also behind leading whitespace) and
    # quotes as csv.writer does, and NULL becomes an empty cell. The body is
    # one expression without FROM, so PostgreSQL can inline it into a query.
    f"""CREATE FUNCTION {POSTGRES_CELL_FUNCTION}(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT COALESCE(
            CASE WHEN strpos(value, ',') > 0 OR strpos(value, '"') > 0
                OR strpos(value, chr(13)) > 0 OR strpos(value, chr(10)) > 0
            THEN '"' || replace({_postgres_neutral("value")}, '"', '""') || '"'
            ELSE {_postgres_neutral("value")} END,
            '')
    $$""",
    # isoformat() in UTC with a Z, without the fraction when it is zero.
    # STABLE, not IMMUTABLE, because to_char is.
    f"""CREATE FUNCTION {POSTGRES_TIME_FUNCTION}(value timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
        SELECT to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
            || CASE WHEN mod(extract(microseconds FROM value)::bigint, 1000000) = 0
               THEN '' ELSE to_char(value AT TIME ZONE 'UTC', '.US') END
            || 'Z'
    $$""",
    f"""CREATE TABLE {TABLE} (
        session_time timestamptz NOT NULL,
        session_id varchar(255) NOT NULL,
        head text NOT NULL,
        decision text,
        biometric_checks text,
        device_checks text,
        PRIMARY KEY (session_time, session_id)
    )""",
    _postgres_row_function(
        f"{TABLE}_row",
        on_old=(
            f"DELETE FROM {TABLE} WHERE session_time = OLD.session_time "
            "AND session_id = OLD.session_id"
        ),
        on_new=_postgres_insert("NEW"),
    ),
    f"""CREATE TRIGGER {TABLE}_row
    AFTER INSERT OR DELETE OR UPDATE OF {", ".join(EXPORTED_COLUMNS)}
    ON {SESSION_TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_row()""",
    _postgres_row_function(
        f"{TABLE}_decision",
        on_old=_postgres_refresh_decision("OLD"),
        on_new=_postgres_refresh_decision("NEW"),
    ),
    f"""CREATE TRIGGER {TABLE}_decision
    AFTER INSERT OR DELETE OR UPDATE OF {", ".join(DECISION_COLUMNS)}
    ON {DECISION_TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_decision()""",
    # TRUNCATE fires no row triggers; Django's flush truncates the session
    # table between tests.
    f"""CREATE FUNCTION {TABLE}_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE {TABLE};
        RETURN NULL;
    END
    $$""",
    f"""CREATE TRIGGER {TABLE}_truncate AFTER TRUNCATE ON {SESSION_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_truncate()""",
    f"{_postgres_insert('s')} FROM {SESSION_TABLE} s",
]
POSTGRES_BACKWARD = [
    f"DROP TRIGGER {TABLE}_truncate ON {SESSION_TABLE}",
    f"DROP TRIGGER {TABLE}_row ON {SESSION_TABLE}",
    f"DROP TRIGGER {TABLE}_decision ON {DECISION_TABLE}",
    f"DROP FUNCTION {TABLE}_decision()",
    f"DROP FUNCTION {TABLE}_truncate()",
    f"DROP FUNCTION {TABLE}_row()",
    f"DROP TABLE {TABLE}",
    f"DROP FUNCTION {POSTGRES_TIME_FUNCTION}(timestamptz)",
    f"DROP FUNCTION {POSTGRES_CELL_FUNCTION}(text)",
]
