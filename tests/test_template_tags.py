"""The project's template tags: the HTML they render and what they escape."""

from datetime import UTC, datetime
from unittest import mock
from zoneinfo import ZoneInfo

import pytest
from django.http import QueryDict
from django.template import Context, Template
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.utils import timezone

from dashboard.filters import SessionFilterForm
from dashboard.templatetags import risk
from reviews.models import Decision, DecisionKind

BERLIN = ZoneInfo("Europe/Berlin")
DATE_FILTERS = Template(
    '<time datetime="{{ value|date:\'c\' }}">{{ value|date:"Y-m-d H:i:s T" }}</time>'
)


def render(source, **context):
    return Template(source).render(Context(context))


# risk_score


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (None, '<span class="risk risk-unknown">No score</span>'),
        (0, '<span class="risk risk-allow">0 (allow)</span>'),
        (49, '<span class="risk risk-allow">49 (allow)</span>'),
        (50, '<span class="risk risk-review">50 (review)</span>'),
        (69, '<span class="risk risk-review">69 (review)</span>'),
        (70, '<span class="risk risk-block">70 (block)</span>'),
        (100, '<span class="risk risk-block">100 (block)</span>'),
    ],
)
def test_risk_score_renders_band(score, expected):
    html = render("{% load risk %}{% risk_score score %}", score=score)

    assert html == expected


@pytest.mark.django_db
def test_risk_score_reads_thresholds_once_per_render():
    source = "{% load risk %}{% for s in scores %}{% risk_score s %}{% endfor %}"

    with mock.patch.object(
        risk, "current_thresholds", wraps=risk.current_thresholds
    ) as thresholds:
        html = render(source, scores=[10, 60, None, 90])

    assert thresholds.call_count == 1
    assert html.count('<span class="risk') == 4


# decision_mark


def test_decision_mark_without_decision():
    html = render("{% load decisions %}{% decision_mark None %}")

    assert html == '<span class="undecided">Undecided</span>'


def test_decision_mark_shows_kind():
    decision = Decision(kind=DecisionKind.CONFIRMED_BOT)

    html = render("{% load decisions %}{% decision_mark d %}", d=decision)

    assert html == (
        '<span class="marker marker-decision decision-confirmed_bot">'
        "Confirmed bot</span>"
    )


def test_decision_mark_escapes_unknown_kind():
    # get_kind_display() returns a value outside the choices as it is.
    decision = Decision(kind='"><script>x</script>')

    html = render("{% load decisions %}{% decision_mark d %}", d=decision)

    assert "<script>" not in html
    assert 'decision-&quot;&gt;&lt;script&gt;x&lt;/script&gt;"' in html
    assert ">&quot;&gt;&lt;script&gt;x&lt;/script&gt;</span>" in html


# time_element


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 3, 1, 14, 30, 5, 123456, tzinfo=UTC),
        datetime(2026, 7, 1, 12, 0, tzinfo=UTC),
        # 02:30 happens twice in Berlin on this day: first CEST, then CET.
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        datetime(2026, 3, 1, 14, 30),
    ],
)
@pytest.mark.parametrize("zone", [UTC, BERLIN])
def test_time_element_matches_date_filters(value, zone):
    with timezone.override(zone):
        expected = DATE_FILTERS.render(Context({"value": value}))
        html = render("{% load datetimes %}{% time_element value %}", value=value)

    assert html == expected


def test_time_element_in_repeated_hour_has_no_zone():
    with timezone.override(BERLIN):
        html = render(
            "{% load datetimes %}{% time_element value %}",
            value=datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
        )

    assert (
        html == '<time datetime="2026-10-25T02:30:00+01:00">2026-10-25 02:30:00 </time>'
    )


def test_time_element_honours_localtime_off():
    value = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    source = (
        "{% load datetimes tz %}"
        "{% localtime off %}{% time_element value %}{% endlocaltime %}"
    )

    with timezone.override(BERLIN):
        html = render(source, value=value)

    assert (
        html
        == '<time datetime="2026-07-01T12:00:00+00:00">2026-07-01 12:00:00 UTC</time>'
    )


def test_time_element_of_none_is_empty():
    assert render("{% load datetimes %}{% time_element None %}") == ""


# The session filters' labels


@pytest.mark.parametrize("user_id", [None, "alice"])
def test_session_filter_labels_match_label_tag(user_id):
    form = SessionFilterForm(QueryDict(""), user_id=user_id)
    request = RequestFactory().get("/sessions/")

    html = render_to_string(
        "dashboard/_session_filters.html", {"form": form, "request": request}
    )

    for field in form:
        assert str(field.label_tag()) in html, field.name
