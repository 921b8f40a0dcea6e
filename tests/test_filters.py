from datetime import UTC, date, datetime, timedelta

import pytest
from django.http import QueryDict
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from dashboard.filters import DOCUMENTED_ACTIONS, SessionFilterForm, filter_value
from roundtable_sync.models import Session, SessionCheck
from tests.fixtures_web import NOW, make_session

pytestmark = pytest.mark.django_db


def matching(query, **kwargs):
    form = SessionFilterForm(QueryDict(query), **kwargs)
    sessions = form.filter(Session.objects.all())
    return sorted(sessions.values_list("session_id", flat=True))


def errors(query):
    form = SessionFilterForm(QueryDict(query))
    form.is_valid()
    return form.errors


def add_check(session, name, status, group="device"):
    SessionCheck.objects.create(session=session, group=group, name=name, status=status)


# Single filters


def test_no_filters_match_everything():
    make_session("alice", "s1", NOW)
    make_session("bob", "s2", NOW)

    assert matching("") == ["s1", "s2"]


def test_user_is_exact():
    make_session("alice", "s1", NOW)
    make_session("alice2", "s2", NOW)

    assert matching("user=alice") == ["s1"]


def test_score_range_is_inclusive():
    for score in (9, 10, 50, 51):
        make_session("u", f"s{score}", NOW, risk_score=score)

    assert matching("score_min=10&score_max=50") == ["s10", "s50"]


def test_score_range_excludes_missing_score():
    make_session("u", "none", NOW, risk_score=None)
    make_session("u", "low", NOW, risk_score=0)

    assert matching("score_min=0") == ["low"]


@pytest.mark.parametrize(
    ("band", "expected"),
    [("allow", ["s49"]), ("review", ["s50", "s69"]), ("block", ["s70"])],
)
def test_band_uses_thresholds(band, expected):
    for score in (49, 50, 69, 70):
        make_session("u", f"s{score}", NOW, risk_score=score)

    assert matching(f"band={band}") == expected


@override_settings(ROUNDTABLE_REVIEW_THRESHOLD=30, ROUNDTABLE_BLOCK_THRESHOLD=40)
def test_band_follows_configured_thresholds():
    make_session("u", "s35", NOW, risk_score=35)
    make_session("u", "s45", NOW, risk_score=45)

    assert matching("band=review") == ["s35"]


def test_flagged_by_score_or_action():
    make_session("u", "score", NOW, risk_score=55, recommended_action="Auto-accept")
    make_session(
        "u",
        "action",
        NOW,
        risk_score=10,
        recommended_action="Auto-reject or high-priority review",
    )
    make_session("u", "clean", NOW, risk_score=10, recommended_action="Auto-accept")

    assert matching("flagged=on") == ["action", "score"]


def test_action_is_exact():
    make_session("u", "s1", NOW, recommended_action="Auto-accept")
    make_session("u", "s2", NOW, recommended_action="Auto-accept later")

    assert matching("action=Auto-accept") == ["s1"]


def test_tag_is_exact_not_substring():
    make_session("u", "exact", NOW, tags=["checkout", "other"])
    make_session("u", "longer", NOW, tags=["checkout-flow"])
    make_session("u", "none", NOW, tags=[])

    assert matching("tag=checkout") == ["exact"]


def test_tag_with_quotes_and_unicode():
    make_session("u", "s1", NOW, tags=['say "hi"', "café"])

    assert matching("tag=" + "say%20%22hi%22") == ["s1"]
    assert matching("tag=caf%C3%A9") == ["s1"]


def test_tag_is_case_sensitive():
    make_session("u", "s1", NOW, tags=["Checkout"])

    assert matching("tag=checkout") == []


def test_tag_does_not_match_json_syntax():
    make_session("u", "s1", NOW, tags=["a", "b"])

    assert matching("tag=%22a%22") == []
    assert matching("tag=a%22,%22b") == []


def test_check_name_and_status_apply_to_same_check():
    both = make_session("u", "both", NOW)
    add_check(both, "vpn", "Detected")
    split = make_session("u", "split", NOW)
    add_check(split, "vpn", "Not detected")
    add_check(split, "tor", "Detected")

    assert matching("check_name=vpn&check_status=Detected") == ["both"]


def test_check_in_both_groups_lists_session_once():
    session = make_session("u", "s1", NOW)
    add_check(session, "shared", "Detected", group="device")
    add_check(session, "shared", "Detected", group="biometric")

    assert matching("check_name=shared&check_status=Detected") == ["s1"]


def test_check_name_alone_matches_any_status():
    reported = make_session("u", "reported", NOW)
    add_check(reported, "vpn", "Unknown")
    make_session("u", "absent", NOW)

    assert matching("check_name=vpn") == ["reported"]


def test_check_status_alone_matches_any_check():
    unknown = make_session("u", "unknown", NOW)
    add_check(unknown, "agent_behavior", "Unknown")
    add_check(unknown, "vpn", "Unknown")
    clean = make_session("u", "clean", NOW)
    add_check(clean, "vpn", "Not detected")

    assert matching("check_status=Unknown") == ["unknown"]


def test_date_range_is_inclusive_in_utc():
    make_session("u", "before", datetime(2026, 3, 1, 23, 59, tzinfo=UTC))
    make_session("u", "first", datetime(2026, 3, 2, 0, 0, tzinfo=UTC))
    make_session("u", "last", datetime(2026, 3, 3, 23, 59, tzinfo=UTC))
    make_session("u", "after", datetime(2026, 3, 4, 0, 0, tzinfo=UTC))

    assert matching("since=2026-03-02&until=2026-03-03") == ["first", "last"]


def test_date_range_follows_current_time_zone():
    # 2026-03-02 00:30 in New York is 05:30 UTC, and 03:00 UTC is still March 1.
    make_session("u", "utc-only", datetime(2026, 3, 2, 3, 0, tzinfo=UTC))
    make_session("u", "local", datetime(2026, 3, 2, 5, 30, tzinfo=UTC))

    with timezone.override("America/New_York"):
        result = matching("since=2026-03-02&until=2026-03-02")

    assert result == ["local"]


def test_time_range_accepts_instants():
    make_session("u", "before", datetime(2026, 3, 2, 9, 59, 59, tzinfo=UTC))
    make_session("u", "start", datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    make_session("u", "end", datetime(2026, 3, 2, 12, 30, tzinfo=UTC))
    make_session("u", "after", datetime(2026, 3, 2, 12, 30, 1, tzinfo=UTC))

    result = matching("since=2026-03-02T10:00&until=2026-03-02T12:30:00")

    assert result == ["end", "start"]


def test_time_range_instants_follow_current_time_zone():
    make_session("u", "utc-ten", datetime(2026, 3, 2, 10, 0, tzinfo=UTC))
    make_session("u", "paris-ten", datetime(2026, 3, 2, 9, 0, tzinfo=UTC))

    with timezone.override("Europe/Paris"):
        result = matching("since=2026-03-02T10:00&until=2026-03-02T10:00")

    assert result == ["paris-ten"]


def test_time_range_mixes_instant_and_day():
    make_session("u", "morning", datetime(2026, 3, 2, 8, 0, tzinfo=UTC))
    make_session("u", "evening", datetime(2026, 3, 3, 23, 0, tzinfo=UTC))
    make_session("u", "next-day", datetime(2026, 3, 4, 0, 0, tzinfo=UTC))

    assert matching("since=2026-03-02T09:00&until=2026-03-03") == ["evening"]


def test_time_range_accepts_utc_offset():
    make_session("u", "s1", datetime(2026, 3, 2, 10, 0, tzinfo=UTC))

    with timezone.override("Asia/Tokyo"):
        result = matching("since=2026-03-02T11:00%2B01:00")

    assert result == ["s1"]


def test_reversed_instant_range_ignores_end():
    make_session("u", "s1", NOW)
    form = SessionFilterForm(QueryDict("since=2026-03-02T12:00&until=2026-03-02"))

    assert "until" not in errors("since=2026-03-02T12:00&until=2026-03-02")
    assert "until" in errors("since=2026-03-02T12:00&until=2026-03-02T11:59")
    assert list(form.filter(Session.objects.all())) != []


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 3, 2, 12, 0, tzinfo=UTC), "2026-03-02T13:00:00"),
        # Clocks in Paris go back at 01:00 UTC, so 00:30 and 01:30 UTC both
        # read 02:30 there, and the second one carries its offset.
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "2026-10-25T02:30:00"),
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "2026-10-25T02:30:00+01:00"),
    ],
)
def test_filter_value_round_trips(moment, expected):
    with timezone.override("Europe/Paris"):
        value = filter_value(moment)
        form = SessionFilterForm(QueryDict(f"since={value.replace('+', '%2B')}"))
        form.is_valid()

    assert value == expected
    # Aware datetimes in a repeated hour never compare equal across zones.
    assert form.cleaned_data["since"].astimezone(UTC) == moment


def test_text_searches_ids_tags_and_explanation():
    make_session("needle-user", "s1", NOW)
    make_session("u", "s2-NEEDLE", NOW)
    make_session("u", "s3", NOW, tags=["has-Needle-tag"])
    make_session("u", "s4", NOW, risk_explanation="A needle in the text")
    make_session("u", "s5", NOW, tags=["hay"], risk_explanation="hay")

    assert matching("q=needle") == ["s1", "s2-NEEDLE", "s3", "s4"]


def test_text_treats_like_wildcards_literally():
    make_session("u", "s1", NOW, tags=["100%_sure"])
    make_session("u", "s2", NOW, tags=["100 sure"])

    assert matching("q=0%25_") == ["s1"]


def test_text_does_not_match_json_syntax_of_tags():
    make_session("u", "s1", NOW, tags=["a", "b"])

    assert matching("q=%22,%22") == []


# Combinations and a fixed user


def test_filters_combine():
    make_session("alice", "match", NOW, risk_score=80, tags=["x"])
    make_session("alice", "low", NOW, risk_score=20, tags=["x"])
    make_session("alice", "untagged", NOW, risk_score=80, tags=[])
    make_session("bob", "other-user", NOW, risk_score=80, tags=["x"])

    assert matching("user=alice&band=block&tag=x") == ["match"]


def test_fixed_user_ignores_user_parameter():
    make_session("alice", "s1", NOW)
    make_session("bob", "s2", NOW)

    assert matching("user=bob", user_id="alice") == ["s1"]


def test_fixed_user_removes_user_field():
    form = SessionFilterForm(QueryDict(""), user_id="alice")

    assert "user" not in form.fields


# Invalid values


def test_invalid_score_names_value_and_other_filters_apply():
    make_session("alice", "s1", NOW, risk_score=10)
    make_session("bob", "s2", NOW, risk_score=10)
    form = SessionFilterForm(QueryDict("score_min=abc&user=alice"))

    sessions = form.filter(Session.objects.all())

    assert list(sessions.values_list("session_id", flat=True)) == ["s1"]
    assert "score_min" in form.errors
    assert '"abc"' in form.invalid_values()[0]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("score_min=-1", "score_min"),
        ("score_max=101", "score_max"),
        ("band=purple", "band"),
        ("since=2026-13-01", "since"),
        ("until=yesterday", "until"),
        ("since=2026-03-02T25:00", "since"),
        ("until=2026-03-02Tnoon", "until"),
    ],
)
def test_invalid_values_are_field_errors(query, field):
    assert field in errors(query)


def test_reversed_score_range_ignores_maximum():
    make_session("u", "s20", NOW, risk_score=20)
    make_session("u", "s80", NOW, risk_score=80)
    form = SessionFilterForm(QueryDict("score_min=50&score_max=10"))

    sessions = form.filter(Session.objects.all())

    assert list(sessions.values_list("session_id", flat=True)) == ["s80"]
    assert "score_max" in form.errors


def test_reversed_date_range_ignores_end():
    make_session("u", "s1", NOW)
    form = SessionFilterForm(QueryDict("since=2026-03-02&until=2026-03-01"))

    sessions = form.filter(Session.objects.all())

    assert list(sessions.values_list("session_id", flat=True)) == ["s1"]
    assert "until" in form.errors


def test_invalid_value_message_names_band():
    form = SessionFilterForm(QueryDict("band=purple"))
    form.is_valid()

    assert "purple" in form.invalid_values()[0]


# Query strings and offered values


def test_querystring_keeps_filters_and_adds_extra():
    form = SessionFilterForm(QueryDict("user=a%20b&tag=x&page=2&score_min=bad"))

    query = QueryDict(form.querystring(sort="-score"))

    assert query["user"] == "a b"
    assert query["tag"] == "x"
    assert query["score_min"] == "bad"
    assert query["sort"] == "-score"
    assert "page" not in query


def test_querystring_none_removes_parameter():
    form = SessionFilterForm(QueryDict("user=alice"))

    assert form.querystring(user=None) == ""


def test_export_url_includes_fixed_user():
    form = SessionFilterForm(QueryDict("band=block"), user_id="alice")

    url = form.export_url()

    path, _, query = url.partition("?")
    assert path == reverse("session_export")
    assert QueryDict(query)["user"] == "alice"
    assert QueryDict(query)["band"] == "block"


def test_offered_actions_are_documented_only(django_assert_num_queries):
    make_session("u", "s1", NOW, recommended_action="Escalate to fraud team")
    form = SessionFilterForm(QueryDict(""))

    with django_assert_num_queries(0):
        offered = form.offered_actions()

    assert offered == list(DOCUMENTED_ACTIONS)


def test_offered_actions_add_requested_undocumented():
    form = SessionFilterForm(QueryDict("action=Escalate"))

    assert form.offered_actions() == [*DOCUMENTED_ACTIONS, "Escalate"]


def test_offered_actions_keep_requested_documented_once():
    form = SessionFilterForm(QueryDict("action=Unknown"))

    assert form.offered_actions() == list(DOCUMENTED_ACTIONS)


def test_date_range_covers_whole_local_day_across_dst():
    # New York moved to summer time on 2026-03-08, a 23-hour day.
    start = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)
    make_session("u", "start", start)
    make_session("u", "end", start + timedelta(hours=22, minutes=59))
    make_session("u", "next-day", start + timedelta(hours=23))

    with timezone.override("America/New_York"):
        result = matching(f"since={date(2026, 3, 8)}&until={date(2026, 3, 8)}")

    assert result == ["end", "start"]


def test_check_status_ignores_case():
    session = make_session("u", "s1", NOW)
    add_check(session, "vpn", "Detected")

    assert matching("check_name=vpn&check_status=detected") == ["s1"]
