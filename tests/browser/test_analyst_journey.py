"""An analyst's day in headless Chromium, from login to a decision and logout.

The server runs as in production (collected static files served by
whitenoise), the API is the sandbox, and the test settings run django-q2
tasks inline, so adding a user or pressing "Poll now" polls before the page
returns. Every step fails on a JavaScript console error or a failed request.
"""

import csv
import json
import re
from datetime import datetime, timedelta

import pytest
import requests
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import expect

from reviews.models import Decision, DecisionKind
from roundtable_sync import tasks
from roundtable_sync.models import Session

pytestmark = [
    pytest.mark.browser,
    # The live server's thread needs committed data, and the journey needs
    # the role groups, alert rules and schedules that migrations create.
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("migration_data"),
]

USERNAME = "dana"
PASSWORD = "browser-test-password"
BOT_FARM = "bot-farm-7"
# Sandbox demo users: a bot with a session about every five minutes, a mixed
# user with about one an hour and a human with one or two a day.
WATCHED = [BOT_FARM, "reseller-42", "alice@example.com"]
BLOCK_THRESHOLD = 70
CANVASES = ["score-histogram", "risk-over-time", "actions-chart", "checks-chart"]

# True once the canvas has a Chart.js chart that has finished animating.
CHART_READY = """
(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  return chart !== undefined && !Chart.animator.running(chart);
}
"""
# Returns the labels and each dataset's values as Chart.js stores them.
CHART_DATA = """
(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  return {
    labels: chart.data.labels,
    datasets: chart.data.datasets.map((d) => ({label: d.label, data: d.data})),
  };
}
"""
# For each dataset, reads the canvas pixel at the centre of its largest bar or
# point and the colour that the dataset fills it with, both as RGBA. A dataset
# without values gets null.
CHART_PIXELS = """
(id) => {
  const chart = Chart.getChart(document.getElementById(id));
  const ratio = chart.currentDevicePixelRatio;
  const probe = document.createElement("canvas").getContext("2d");
  return chart.data.datasets.map((dataset, index) => {
    const values = dataset.data.map((v) => (typeof v === "object" && v ? v.y : v));
    const largest = values.indexOf(Math.max(...values.filter((v) => v !== null)));
    const centre = chart.getDatasetMeta(index).data[largest].getCenterPoint();
    const drawn = chart.ctx.getImageData(
      Math.round(centre.x * ratio), Math.round(centre.y * ratio), 1, 1).data;
    const fill = Array.isArray(dataset.backgroundColor)
      ? dataset.backgroundColor[largest] : dataset.backgroundColor;
    probe.clearRect(0, 0, 1, 1);
    probe.fillStyle = fill;
    probe.fillRect(0, 0, 1, 1);
    return {
      label: dataset.label,
      value: values[largest],
      drawn: Array.from(drawn),
      fill: Array.from(probe.getImageData(0, 0, 1, 1).data),
    };
  });
}
"""


@pytest.fixture(name="api")
def api_fixture(sandbox, settings):
    """The sandbox as the product's API, its clock an hour behind the server's.

    A later step sets it to the present, so an hour of new sessions arrives.
    """
    sandbox.clock.now = timezone.now() - timedelta(hours=1)
    settings.ROUNDTABLE_API_URL = sandbox.url
    settings.ROUNDTABLE_API_KEY = sandbox.key
    return sandbox


@pytest.fixture(name="analyst")
def analyst_fixture(django_user_model):
    user = django_user_model.objects.create_user(USERNAME, password=PASSWORD)
    Group.objects.get(name="analysts").user_set.add(user)
    return user


def test_analyst_journey(page, page_problems, api, analyst, screenshot, tmp_path):
    log_in(page)
    page_problems.assert_none()

    add_users(page)
    page_problems.assert_none()

    poll_now_stores_new_sessions(page, api)
    page_problems.assert_none()

    # The worker's events task dates sessions that arrived without user_logs.
    # A cluster runs it every minute, and here it runs once with a large budget.
    assert tasks.fetch_events(budget=1000) > 0
    assert not Session.objects.filter(needs_events=True).exists()

    user_page_draws_risk_chart(page, "reseller-42")
    screenshot(page, "user")
    page_problems.assert_none()

    overview_draws_charts_from_data(page)
    screenshot(page, "overview")
    page_problems.assert_none()

    session_id = filter_explorer_and_export(page, tmp_path)
    page_problems.assert_none()

    session_page_lists_every_check(page, api, session_id)
    screenshot(page, "session")
    page_problems.assert_none()

    decide_from_review_queue(page, analyst)
    page_problems.assert_none()

    log_out(page)
    page_problems.assert_none()


def log_in(page):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))

    page.get_by_label("Username").fill(USERNAME)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(re.compile(r"/$"))
    expect(page.get_by_text(f"Signed in as {USERNAME}")).to_be_visible()


def add_users(page):
    page.get_by_role("link", name="Watchlist", exact=True).click()
    page.get_by_role("textbox", name="User IDs").fill("\n".join(WATCHED))
    page.get_by_role("button", name="Add to watchlist").click()

    expect(page.get_by_text("Added 3 user(s) to the watchlist")).to_be_visible()
    for user_id in WATCHED:
        stored = Session.objects.filter(user_id=user_id).count()
        assert stored > 0, user_id
        row = page.get_by_role("row").filter(
            has=page.get_by_role("rowheader", name=user_id, exact=True)
        )
        expect(row.locator("td.number")).to_have_text(str(stored))


def poll_now_stores_new_sessions(page, api):
    page.get_by_role("link", name=BOT_FARM, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(BOT_FARM)
    before = set(
        Session.objects.filter(user_id=BOT_FARM).values_list("session_id", flat=True)
    )

    api.clock.now = timezone.now()
    page.get_by_role("button", name="Poll now").click()

    expect(page.get_by_text(f"Poll of {BOT_FARM} queued.")).to_be_visible()
    new = Session.objects.filter(user_id=BOT_FARM).exclude(session_id__in=before)
    new_ids = list(new.values_list("session_id", flat=True))
    assert new_ids, "the sandbox served no new session in an hour"
    table = page.locator("table.session-table")
    for session_id in new_ids:
        expect(table.get_by_role("link", name=session_id, exact=True)).to_be_visible()


def user_page_draws_risk_chart(page, user_id):
    page.get_by_role("link", name="Watchlist", exact=True).click()
    page.get_by_role("link", name=user_id, exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(user_id)

    page.wait_for_function(CHART_READY, arg="risk-chart")
    chart = page.evaluate(CHART_DATA, "risk-chart")
    plotted = sum(len(dataset["data"]) for dataset in chart["datasets"])
    scored = Session.objects.filter(user_id=user_id, risk_score__isnull=False)
    assert plotted == scored.count()
    assert_drawn(page, "risk-chart")


def overview_draws_charts_from_data(page):
    page.get_by_role("link", name="Overview", exact=True).click()
    since = datetime.fromisoformat(
        page.locator("main p.hint time").first.get_attribute("datetime")
    )
    for canvas_id in CANVASES:
        page.wait_for_function(CHART_READY, arg=canvas_id)

    histogram = json_block(page, "score-histogram-data")
    chart = page.evaluate(CHART_DATA, "score-histogram")
    assert chart["labels"] == histogram["labels"]
    assert [d["data"] for d in chart["datasets"]] == [
        band["counts"] for band in histogram["bands"]
    ]
    scored = Session.objects.filter(
        session_time__gte=since, risk_score__isnull=False
    ).count()
    assert sum(sum(d["data"]) for d in chart["datasets"]) == scored
    assert_drawn(page, "score-histogram")

    over_time = json_block(page, "risk-over-time-data")
    chart = page.evaluate(CHART_DATA, "risk-over-time")
    assert chart["labels"] == [day["date"] for day in over_time["days"]]
    assert chart["datasets"][0]["data"] == [day["average"] for day in over_time["days"]]
    # The share line may run under the average line, so only the top one is read.
    assert_drawn(page, "risk-over-time", datasets=1)

    actions = json_block(page, "actions-data")
    chart = page.evaluate(CHART_DATA, "actions-chart")
    assert chart["labels"] == [bar["label"] for bar in actions["bars"]]
    assert chart["datasets"][0]["data"] == [bar["count"] for bar in actions["bars"]]
    assert (
        sum(chart["datasets"][0]["data"])
        == Session.objects.filter(session_time__gte=since).count()
    )
    assert_drawn(page, "actions-chart")

    checks = json_block(page, "checks-data")
    chart = page.evaluate(CHART_DATA, "checks-chart")
    assert chart["labels"] == [f"{c['group']}: {c['name']}" for c in checks]
    assert chart["datasets"][0]["data"] == [c["detection_percent"] for c in checks]
    assert_drawn(page, "checks-chart")


def json_block(page, element_id):
    return json.loads(page.locator(f"#{element_id}").text_content())


def assert_drawn(page, canvas_id, datasets=None):
    """Assert that the largest bar or point of each dataset is on the canvas.

    The pixel at its centre must have the dataset's fill colour, within the
    rounding of anti-aliasing.
    """
    probes = page.evaluate(CHART_PIXELS, canvas_id)[:datasets]
    assert any(probes), canvas_id
    for probe in filter(None, probes):
        assert probe["value"] > 0, probe
        for drawn, fill in zip(probe["drawn"], probe["fill"], strict=True):
            assert abs(drawn - fill) <= 2, (canvas_id, probe)


def filter_explorer_and_export(page, tmp_path):
    """Filter the explorer to one user's block band, export it, and return the
    newest session's ID."""
    page.get_by_role("link", name="Sessions", exact=True).click()
    page.get_by_label("User ID").fill(BOT_FARM)
    page.get_by_label("Band").select_option("block")
    page.get_by_role("button", name="Apply filters").click()

    expect(page).to_have_url(re.compile(r"[?&]user=bot-farm-7(&|$)"))
    expect(page).to_have_url(re.compile(r"[?&]band=block(&|$)"))
    expected = Session.objects.filter(
        user_id=BOT_FARM, risk_score__gte=BLOCK_THRESHOLD
    ).order_by("-session_time", "-session_id")
    assert expected.exists()
    table = page.locator("table.session-table")
    expect(table.locator("td.user-id")).not_to_have_count(0)
    for user_cell in table.locator("td.user-id").all():
        expect(user_cell).to_have_text(BOT_FARM)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    path = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(path)
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))

    assert {row["session_id"] for row in rows} == set(
        expected.values_list("session_id", flat=True)
    )
    assert len(rows) == expected.count()
    assert {row["user_id"] for row in rows} == {BOT_FARM}
    assert all(int(row["risk_score"]) >= BLOCK_THRESHOLD for row in rows)
    return expected.first().session_id


def session_page_lists_every_check(page, api, session_id):
    page.locator("table.session-table").get_by_role(
        "link", name=session_id, exact=True
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Session {session_id}")

    # What the API serves now, which the last poll stored: the sandbox's clock
    # has not moved since.
    served = sandbox_session(api, BOT_FARM, session_id)
    expected = {
        (group, name, status)
        for group, key in (
            ("Biometric", "biometric_checks"),
            ("Device", "device_checks"),
        )
        for name, status in served[key].items()
    }
    assert expected
    rows = page.locator("section[aria-labelledby='checks-heading'] table tbody tr")
    listed = {
        (
            row.locator("td").nth(0).inner_text(),
            row.locator("th code").inner_text(),
            row.locator(".check-status").inner_text(),
        )
        for row in rows.all()
    }
    assert listed == expected
    score = page.locator(".verdict-value").first
    expect(score).to_contain_text(str(served["risk_score"]))


def sandbox_session(api, user_id, session_id):
    response = requests.get(
        f"{api.url}/v1/users/{user_id}/sessions",
        headers={"Authorization": f"Bearer {api.key}"},
        timeout=10,
    )
    response.raise_for_status()
    sessions = response.json()["sessions"]
    return next(s for s in sessions if s["session_id"] == session_id)


def decide_from_review_queue(page, analyst):
    page.get_by_role("link", name="Review queue", exact=True).click()
    # The shortcuts work once review_queue.js has run.
    page.wait_for_load_state()
    first = page.locator("#evidence-heading a.session-id").inner_text()
    left_before = queue_remaining(page)

    # n skips the session without deciding.
    page.keyboard.press("n")
    expect(page.locator("#evidence-heading a.session-id")).not_to_have_text(first)
    skipped, first = first, page.locator("#evidence-heading a.session-id").inner_text()
    page.wait_for_load_state()

    page.keyboard.press("1")
    expect(page.get_by_label("Confirmed bot")).to_be_checked()
    page.keyboard.press("Enter")

    expect(
        page.get_by_text(f"Recorded Confirmed bot on session {first}.")
    ).to_be_visible()
    expect(page.locator("#evidence-heading a.session-id")).not_to_have_text(first)
    decision = Decision.objects.get(session_id=first)
    assert decision.kind == DecisionKind.CONFIRMED_BOT
    assert decision.decided_by == analyst
    assert not Decision.objects.filter(session_id=skipped).exists()
    assert queue_remaining(page) == left_before - 1


def queue_remaining(page):
    hint = page.locator("main p.hint").first.inner_text()
    return int(re.search(r"(\d+) sessions? left to decide", hint).group(1))


def log_out(page):
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login/$"))

    page.goto("/sessions/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/sessions/$"))
