"""Fixtures for the browser tests: a production-like server and headless Chromium.

The server is Django's live-server thread, but static files are collected
into a temporary STATIC_ROOT with the manifest storage and served by
whitenoise's middleware, as in production. pytest-django's ``live_server``
serves them from the finders instead, under their unhashed names, so it would
hide a template that names a file collectstatic did not produce.
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test.testcases import LiveServerThread
from django.test.utils import override_settings
from playwright.sync_api import sync_playwright

from tests.browser.problems import PageProblems

CHROMIUM = "/usr/bin/chromium"
# Chromium's own background connections (updates, sync, safe browsing) have
# no place in a test and fail on machines without internet access.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    # Debian's launcher adds this only when /dev/shm is small, and its check
    # fails on machines where findmnt prints two lines.
    "--disable-dev-shm-usage",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
WINDOW = {"width": 1280, "height": 900}
SCREENSHOT_HEIGHT = 1600


def _whitenoise_serves_static(application):
    """Leave static files to whitenoise's middleware inside ``application``."""
    return application


@pytest.fixture(scope="package")
def server_url(django_db_setup, tmp_path_factory):
    """Start the product on a free loopback port and return its base URL."""
    static_root = tmp_path_factory.mktemp("static-root")
    production_static = override_settings(
        STATIC_ROOT=static_root,
        STORAGES={
            **settings.STORAGES,
            "staticfiles": {
                "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
            },
        },
        WHITENOISE_USE_FINDERS=False,
        WHITENOISE_AUTOREFRESH=False,
        # Django's live-server thread serves MEDIA_ROOT under MEDIA_URL, and
        # the product's empty MEDIA_URL would match every path.
        MEDIA_URL="/media/",
        MEDIA_ROOT=tmp_path_factory.mktemp("media-root"),
    )
    with production_static:
        call_command("collectstatic", interactive=False, verbosity=0)
        thread = LiveServerThread("127.0.0.1", _whitenoise_serves_static)
        thread.daemon = True
        thread.start()
        thread.is_ready.wait()
        if thread.error:
            raise thread.error
        try:
            yield f"http://127.0.0.1:{thread.port}"
        finally:
            thread.terminate()


@pytest.fixture(scope="package")
def chromium():
    """Launch Debian's headless Chromium through Playwright."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "package. Install it with scripts/install-chromium (as root)."
        )
    # Playwright's sync API runs an event loop in this thread, so Django's
    # ORM calls in the tests would raise SynchronousOnlyOperation without this.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()


@pytest.fixture
def page_problems():
    return PageProblems()


@pytest.fixture
def page(chromium, server_url, page_problems):
    """A fresh browser tab on the server that fails the test on any problem.

    A problem is a console error, an uncaught exception, a failed request or
    a response of 400 or above (see PageProblems).

    Downloads are accepted, times show in UTC and the window is 1280 pixels
    wide, as are the README's screenshots.
    """
    context = chromium.new_context(
        base_url=server_url,
        viewport=WINDOW,
        accept_downloads=True,
        locale="en-US",
        timezone_id="UTC",
    )
    context.set_default_timeout(15_000)
    tab = context.new_page()
    page_problems.watch(tab)
    yield tab
    context.close()
    page_problems.assert_none()


@pytest.fixture
def screenshot():
    """Return a function that saves screenshots of a page under test-artifacts/.

    NAME.png is the top of the page, at most SCREENSHOT_HEIGHT pixels tall,
    the size that docs/screenshots/ keeps. NAME-full.png is the whole page.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(tab, name):
        tab.screenshot(path=SCREENSHOTS / f"{name}-full.png", full_page=True)
        height = min(SCREENSHOT_HEIGHT, tab.evaluate("document.body.scrollHeight"))
        tab.screenshot(
            path=SCREENSHOTS / f"{name}.png",
            full_page=True,
            clip={"x": 0, "y": 0, "width": WINDOW["width"], "height": height},
        )

    return save
