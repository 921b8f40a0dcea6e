import json
import os
import shutil
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pytest_django.asserts import assertContains, assertNotContains, assertRedirects

from dashboard.models import AnalystPreference
from roundtable_sync.models import WatchedUser
from tests.fixtures_web import (  # noqa: F401
    NOW,
    analyst_client_fixture,
    analyst_fixture,
    anonymous_client_fixture,
    frozen_now_fixture,
    make_session,
)

pytestmark = pytest.mark.django_db

PREFERENCES = reverse("preferences")
PREFERENCE_TABLE = AnalystPreference._meta.db_table


def session_url(session_id="s1"):
    return f"{reverse('session_detail')}?id={session_id}"


@pytest.fixture(name="stored_session")
def stored_session_fixture(frozen_now):
    return make_session("user-1", "s1", NOW)


# Rendering in the analyst's zone


def test_default_zone_is_utc(analyst_client, stored_session):
    response = analyst_client.get(session_url())

    assertContains(response, "2026-03-02 12:00:00 UTC")


def test_tokyo_analyst_sees_jst(analyst_client, analyst, stored_session):
    AnalystPreference.objects.create(user=analyst, time_zone="Asia/Tokyo")

    response = analyst_client.get(session_url())

    assertContains(response, "2026-03-02 21:00:00 JST")
    assertNotContains(response, "12:00:00 UTC")
    assertContains(response, "Preferences (times in Asia/Tokyo)")


def test_dashboard_default_zone_applies(analyst_client, stored_session, settings):
    settings.DASHBOARD_TIME_ZONE = "America/New_York"

    response = analyst_client.get(session_url())

    assertContains(response, "2026-03-02 07:00:00 EST")


def test_analyst_zone_overrides_default(
    analyst_client, analyst, stored_session, settings
):
    settings.DASHBOARD_TIME_ZONE = "America/New_York"
    AnalystPreference.objects.create(user=analyst, time_zone="Asia/Tokyo")

    response = analyst_client.get(session_url())

    assertContains(response, "2026-03-02 21:00:00 JST")


def test_user_page_chart_labels_use_zone(analyst_client, analyst, frozen_now):
    AnalystPreference.objects.create(user=analyst, time_zone="Asia/Tokyo")
    watched = WatchedUser.objects.create(user_id="user-1")
    make_session("user-1", "s1", NOW, risk_score=90)

    response = analyst_client.get(reverse("user_detail", args=[watched.pk]))

    chart = response.context["risk_chart"]
    assert chart["time_zone"] == "Asia/Tokyo"
    assert chart["series"][2]["points"][0]["label"] == "2026-03-02 21:00 JST"


def test_anonymous_pages_use_default(anonymous_client, settings):
    settings.DASHBOARD_TIME_ZONE = "Asia/Tokyo"

    response = anonymous_client.get(reverse("login"))

    assert response.status_code == 200
    assert "_auth_user_id" not in anonymous_client.session


def test_zone_is_read_on_every_request(analyst_client, stored_session):
    analyst_client.get(session_url())
    with CaptureQueriesContext(connection) as second:
        analyst_client.get(session_url())

    preference_queries = [
        query for query in second.captured_queries if PREFERENCE_TABLE in query["sql"]
    ]
    assert len(preference_queries) == 1


def test_zone_changed_elsewhere_applies_at_next_page(
    analyst_client, analyst, stored_session
):
    analyst_client.get(session_url())
    # As from the admin or another browser, outside this login session.
    AnalystPreference.objects.create(user=analyst, time_zone="Asia/Tokyo")

    response = analyst_client.get(session_url())

    assertContains(response, "2026-03-02 21:00:00 JST")


def test_zone_dropped_from_tz_database_falls_back(
    analyst_client, analyst, stored_session, caplog
):
    # Saved without validation, as a row written before a tz database update.
    AnalystPreference.objects.create(user=analyst, time_zone="Mars/Olympus_Mons")

    response = analyst_client.get(session_url())

    assertContains(response, "2026-03-02 12:00:00 UTC")
    assert "unsupported time zone 'Mars/Olympus_Mons'" in caplog.text


# Preferences page


def test_preferences_requires_login(anonymous_client):
    response = anonymous_client.get(PREFERENCES)

    assertRedirects(response, f"{reverse('login')}?next={PREFERENCES}")


def test_preferences_lists_zone_names(analyst_client):
    response = analyst_client.get(PREFERENCES)

    assertContains(response, '<option value="Asia/Tokyo">Asia/Tokyo</option>')
    assertContains(response, '<option value="" selected>Dashboard default (UTC)')
    assertContains(response, "2026-03-02 12:00 UTC")


def test_preferences_shows_saved_zone(analyst_client, analyst):
    AnalystPreference.objects.create(user=analyst, time_zone="Asia/Tokyo")

    response = analyst_client.get(PREFERENCES)

    assertContains(response, '<option value="Asia/Tokyo" selected>')
    assertContains(response, "2026-03-02 21:00 JST")


def test_saving_zone_applies_at_once(analyst_client, analyst, stored_session):
    response = analyst_client.post(
        PREFERENCES, {"time_zone": "Asia/Tokyo"}, follow=True
    )
    page = analyst_client.get(session_url())

    assert AnalystPreference.objects.get(user=analyst).time_zone == "Asia/Tokyo"
    assertRedirects(response, PREFERENCES)
    assertContains(response, "Times are now shown in Asia/Tokyo.")
    assertContains(page, "2026-03-02 21:00:00 JST")


def test_saving_blank_returns_to_default(analyst_client, analyst, stored_session):
    AnalystPreference.objects.create(user=analyst, time_zone="Asia/Tokyo")

    response = analyst_client.post(PREFERENCES, {"time_zone": ""}, follow=True)
    page = analyst_client.get(session_url())

    assert AnalystPreference.objects.get(user=analyst).time_zone == ""
    assertContains(response, "the dashboard default, UTC")
    assertContains(page, "2026-03-02 12:00:00 UTC")


def test_invalid_zone_rejected_by_form(analyst_client, analyst):
    response = analyst_client.post(PREFERENCES, {"time_zone": "Mars/Olympus_Mons"})

    assert response.status_code == 200
    assert not AnalystPreference.objects.filter(user=analyst).exists()
    assertContains(response, "Select a valid choice. Mars/Olympus_Mons is not one")


def test_invalid_zone_rejected_by_model(analyst):
    preference = AnalystPreference(user=analyst, time_zone="Mars/Olympus_Mons")

    with pytest.raises(ValidationError, match="not a time zone name this dashboard"):
        preference.full_clean()


@pytest.mark.parametrize("name", ["localtime", "Factory", "EST5EDT"])
def test_browser_rejected_zone_not_offered(analyst_client, name):
    response = analyst_client.get(PREFERENCES)

    assertNotContains(response, f'<option value="{name}">')


def test_utc_and_area_zones_offered(analyst_client):
    response = analyst_client.get(PREFERENCES)

    assertContains(response, '<option value="UTC">UTC</option>')
    assertContains(response, '<option value="Etc/GMT+5">Etc/GMT+5</option>')


@pytest.mark.parametrize("name", ["localtime", "Factory"])
def test_browser_rejected_zone_rejected_by_model(analyst, name):
    preference = AnalystPreference(user=analyst, time_zone=name)

    with pytest.raises(ValidationError, match="not a time zone name this dashboard"):
        preference.full_clean()


def test_browser_rejected_zone_in_preference_falls_back(
    analyst_client, analyst, stored_session, caplog
):
    AnalystPreference.objects.create(user=analyst, time_zone="localtime")

    response = analyst_client.get(session_url())

    assertContains(response, "2026-03-02 12:00:00 UTC")
    assert "unsupported time zone 'localtime'" in caplog.text


def test_preferences_requires_csrf_token(analyst):
    client = Client(enforce_csrf_checks=True)
    client.force_login(analyst)

    response = client.post(PREFERENCES, {"time_zone": "Asia/Tokyo"})

    assert response.status_code == 403
    assert not AnalystPreference.objects.exists()


# DASHBOARD_TIME_ZONE setting


def load_settings(**env):
    """Import the product's settings in a fresh interpreter with ``env``."""
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DJANGO_", "ROUNDTABLE_", "DATABASE_", "DASHBOARD_"))
    }
    return subprocess.run(
        [sys.executable, "-c", "import dashboard.settings"],
        cwd=django_settings.BASE_DIR,
        env={**clean, "DJANGO_DEBUG": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_invalid_setting_stops_start_up():
    result = load_settings(DASHBOARD_TIME_ZONE="Mars/Olympus_Mons")

    assert result.returncode != 0
    assert (
        "DASHBOARD_TIME_ZONE='Mars/Olympus_Mons' is not a supported IANA time zone"
        in result.stderr
    )


@pytest.mark.parametrize("name", ["localtime", "Factory"])
def test_browser_rejected_setting_stops_start_up(name):
    result = load_settings(DASHBOARD_TIME_ZONE=name)

    assert result.returncode != 0
    assert f"DASHBOARD_TIME_ZONE='{name}' is not a supported" in result.stderr


def test_valid_setting_starts():
    result = load_settings(DASHBOARD_TIME_ZONE="Europe/Paris")

    assert result.returncode == 0, result.stderr


# The user page's chart script, run by Node.js against a stub DOM and Chart.js

RUN_USER_CHART = """
const fs = require("fs");
const vm = require("vm");
const [script, data, withChart] = process.argv.slice(1);
const listeners = [];
const elements = {
  "risk-chart-data": { textContent: data },
  "risk-chart": {},
};
const context = {
  document: {
    documentElement: {},
    getElementById: (id) => elements[id] || null,
    addEventListener: (name, listener) => listeners.push(listener),
  },
  getComputedStyle: () => ({ getPropertyValue: () => "" }),
};
let config = null;
if (withChart === "yes") {
  context.Chart = function (canvas, options) { config = options; };
}
vm.runInNewContext(fs.readFileSync(script, "utf8"), context);
listeners.forEach((listener) => listener());
const x = config && config.options.scales.x;
console.log(JSON.stringify(config && {
  title: x.title.text,
  tick: x.ticks.callback(Date.UTC(2026, 2, 2, 12)),
}));
"""


def run_user_chart(time_zone, with_chart=True):
    """Run static/js/user_detail.js in Node.js and return what it drew."""
    data = {
        "time_zone": time_zone,
        "series": [{"label": "Block", "band": "block", "points": []}],
        "scoring_changes": [],
    }
    result = subprocess.run(
        [
            shutil.which("node") or "node",
            "-e",
            RUN_USER_CHART,
            str(django_settings.BASE_DIR / "static" / "js" / "user_detail.js"),
            json.dumps(data),
            "yes" if with_chart else "no",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.process
@pytest.mark.parametrize("name", ["localtime", "Factory"])
def test_user_chart_falls_back_to_utc_for_rejected_zone(name):
    drawn = run_user_chart(name)

    assert drawn["title"] == "Session time (UTC)"
    assert "2026" in drawn["tick"]


@pytest.mark.process
def test_user_chart_uses_valid_zone():
    drawn = run_user_chart("Asia/Tokyo")

    assert drawn["title"] == "Session time (Asia/Tokyo)"


@pytest.mark.process
def test_user_chart_skipped_without_chart_js():
    assert run_user_chart("UTC", with_chart=False) is None
