from datetime import UTC, datetime

import pytest
from django.db import connection

from roundtable_sync.models import Session
from roundtable_sync.parsing import parse_session_list
from roundtable_sync.search import SearchCandidates, can_prefilter
from roundtable_sync.store import store_sessions
from tests import payloads
from workflow.erasure import delete_stored_data

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.django_db


def store(user_id, session_id, **changes):
    payload = payloads.session(session_id, **changes)
    parsed = parse_session_list(payloads.user_sessions(user_id, [payload]), "user_id")
    store_sessions(user_id, parsed.sessions, NOW)


def candidates(text):
    assert can_prefilter(text, connection.vendor)
    return set(
        Session.objects.filter(SearchCandidates(text)).values_list("pk", flat=True)
    )


def test_candidates_cover_every_searched_field():
    store("alice-42", "sess-aaa", risk_explanation="Teleporting mouse", tags=[])
    store("bob", "sess-bbb", risk_explanation="", tags=["café-flow", "Checkout"])

    assert candidates("SESS-A") == {"sess-aaa"}
    assert candidates("ice-4") == {"sess-aaa"}
    assert candidates("teleport") == {"sess-aaa"}
    assert candidates("é-fl") == {"sess-bbb"}
    assert candidates("CHECKOUT") == {"sess-bbb"}
    assert candidates("sess-") == {"sess-aaa", "sess-bbb"}


def test_candidates_follow_changed_session():
    store("alice", "s1", risk_explanation="Teleporting mouse", tags=["old-tag"])

    store("alice", "s1", risk_explanation="Calm typing", tags=["new-tag"])

    assert candidates("teleport") == set()
    assert candidates("old-tag") == set()
    assert candidates("calm typ") == {"s1"}
    assert candidates("new-tag") == {"s1"}


def test_candidates_forget_deleted_sessions():
    store("alice", "s1", risk_explanation="Teleporting mouse")
    store("bob", "s2", risk_explanation="Teleporting mouse")

    delete_stored_data("alice")

    assert candidates("teleport") == {"s2"}


def test_short_search_skips_sqlite_index():
    assert not can_prefilter("ab", "sqlite")
    assert can_prefilter("abc", "sqlite")


def test_escaped_characters_skip_postgres_index():
    # jsonb's text output writes a quote in a tag as \", so the typed text
    # would not be found in the indexed document.
    assert not can_prefilter('a"b', "postgresql")
    assert not can_prefilter("a\\b", "postgresql")
    assert can_prefilter("ab", "postgresql")


@pytest.mark.postgres
def test_postgres_search_uses_trigram_index():
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL")
    store("alice", "s1", risk_explanation="Teleporting mouse")
    sessions = Session.objects.filter(SearchCandidates("teleport"))

    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        plan = sessions.explain()

    assert "roundtable_sync_session_search" in plan
