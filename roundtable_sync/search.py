"""An index-backed pre-filter for free-text search over stored sessions.

The explorer's search matches part of a session ID, user ID, explanation or
tag, ignoring case, which is a scan of every session without an index. Each
database gets a trigram index over those four fields joined by newlines:

- SQLite: the FTS5 table ``roundtable_sync_session_search`` with the trigram
  tokenizer, keyed by the session table's rowid and kept up to date by
  triggers on the session table, so every write path maintains it.
- PostgreSQL: a pg_trgm GIN index on ``SEARCH_DOCUMENT_PG``.

NOTE: a migration that makes Django rebuild the session table on SQLite
(copy, drop, rename) drops the triggers and renumbers rowids, so it must
create the triggers again and refill the FTS5 table.

``SearchCandidates`` selects a superset of the sessions that match. The
caller still applies the exact conditions, so results are the same as
without the index.
"""

from django.db.models import BooleanField, Expression

FTS_TABLE = "roundtable_sync_session_search"
# The trigram tokenizer cannot match a phrase of fewer than three characters.
MIN_FTS_LENGTH = 3
# Characters that jsonb's text output escapes inside a tag, so a search text
# containing one of them might not appear in the document as typed.
JSON_ESCAPED = frozenset('"\\') | frozenset(chr(code) for code in range(32))

# The indexed expression. The index migration repeats it verbatim, because
# PostgreSQL uses the index only for an identical expression.
SEARCH_DOCUMENT_PG = (
    'UPPER(({table}."session_id" || chr(10) || {table}."user_id" || chr(10) '
    "|| COALESCE({table}.\"risk_explanation\", '') || chr(10) "
    '|| {table}."tags"::text))'
)


def fts_phrase(text):
    """Quote ``text`` as one FTS5 phrase, so its characters match literally."""
    return '"' + text.replace('"', '""') + '"'


def can_prefilter(text, vendor):
    """Return whether the index can narrow a search for ``text``."""
    if vendor == "sqlite":
        return len(text) >= MIN_FTS_LENGTH
    if vendor == "postgresql":
        return not JSON_ESCAPED.intersection(text)
    return False


class SearchCandidates(Expression):
    """True for sessions whose indexed text may contain ``text``.

    Use it only where ``can_prefilter`` is true, beside the exact conditions.
    """

    conditional = True
    output_field = BooleanField()

    def __init__(self, text):
        super().__init__()
        self.text = text

    def _table(self, compiler):
        alias = compiler.query.get_initial_alias()
        return compiler.quote_name_unless_alias(alias)

    def as_sql(self, compiler, connection):
        raise NotImplementedError(f"No search index on {connection.vendor}.")

    def as_sqlite(self, compiler, connection):
        sql = (
            f"{self._table(compiler)}.rowid IN (SELECT rowid FROM {FTS_TABLE} "
            f"WHERE {FTS_TABLE} MATCH %s)"
        )
        return sql, [fts_phrase(self.text)]

    def as_postgresql(self, compiler, connection):
        document = SEARCH_DOCUMENT_PG.format(table=self._table(compiler))
        pattern = f"%{connection.ops.prep_for_like_query(self.text)}%"
        return f"{document} LIKE UPPER(%s)", [pattern]
