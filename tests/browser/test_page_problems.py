"""The browser tests' failure checks, and the favicon that keeps them quiet."""

import re

import pytest
from django.templatetags.static import static
from playwright.sync_api import expect

from tests.browser.problems import PageProblems

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("migration_data"),
]


@pytest.fixture(name="watched_tab")
def watched_tab_fixture(chromium, server_url):
    """A tab whose problems the test reads itself, instead of failing on them."""
    context = chromium.new_context(base_url=server_url)
    tab = context.new_page()
    problems = PageProblems()
    problems.watch(tab)
    yield tab, problems
    context.close()


def test_favicon_ico_serves_svg_icon(page, server_url):
    response = page.goto("/favicon.ico")

    assert response.status == 200
    assert response.url == server_url + static("favicon.svg")
    assert re.fullmatch(r"/static/favicon\.[0-9a-f]{12}\.svg", static("favicon.svg"))
    assert response.headers["content-type"].startswith("image/svg+xml")


def test_login_page_links_collected_icon(page):
    page.goto("/login/")

    icon = page.locator("link[rel='icon']")
    expect(icon).to_have_attribute("href", static("favicon.svg"))
    assert page.request.get(icon.get_attribute("href")).ok


def test_problems_catch_console_errors(watched_tab):
    tab, problems = watched_tab
    tab.goto("/login/")

    with tab.expect_console_message():
        tab.evaluate("console.error('logged on purpose')")
    with tab.expect_event("pageerror"):
        tab.evaluate("setTimeout(() => { throw new Error('thrown on purpose'); })")

    assert any("logged on purpose" in problem for problem in problems.problems)
    assert any("thrown on purpose" in problem for problem in problems.problems)


def test_problems_catch_failed_requests(watched_tab, server_url):
    tab, problems = watched_tab
    tab.goto("/login/")
    # The Content-Security-Policy blocks other origins before any request
    # leaves, so a same-origin request is aborted at the network layer.
    unreachable = f"{server_url}/aborted-on-purpose"
    tab.route("**/aborted-on-purpose", lambda route: route.abort())

    with tab.expect_event("requestfailed"):
        tab.evaluate("(url) => fetch(url).catch(() => null)", unreachable)
    with tab.expect_console_message(lambda message: "404" in message.text):
        tab.evaluate("fetch('/static/missing.js')")

    assert any(
        problem.startswith(f"request failed: GET {unreachable}")
        for problem in problems.problems
    ), problems.problems
    assert f"HTTP 404 for GET {server_url}/static/missing.js" in problems.problems


def test_problems_skip_expected_status(watched_tab, server_url):
    tab, problems = watched_tab
    missing = f"{server_url}/static/missing.js"
    problems.expect_status(404, missing)

    tab.goto("/login/")
    with tab.expect_console_message(lambda message: "404" in message.text):
        tab.evaluate("fetch('/static/missing.js')")

    assert problems.problems == []
