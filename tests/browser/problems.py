"""Collect what a browser page did wrong: JavaScript errors and failed requests."""

from dataclasses import dataclass, field


@dataclass
class PageProblems:
    """Console errors, uncaught exceptions and failed requests of watched pages.

    A response with status 400 or above is a problem unless a test announced
    it with ``expect_status``. Content-Security-Policy violations reach the
    console as errors, so they count too.
    """

    problems: list[str] = field(default_factory=list)
    expected: set[tuple[int, str]] = field(default_factory=set)

    def watch(self, page):
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)
        page.on("requestfailed", self._on_request_failed)
        page.on("response", self._on_response)

    def expect_status(self, status, url):
        """Accept one response status for one URL (absolute) from now on."""
        self.expected.add((status, url))

    def assert_none(self):
        assert self.problems == [], "\n".join(self.problems)

    def _on_console(self, message):
        if message.type != "error":
            return
        location = message.location.get("url", "")
        # Chromium also logs each response of 400 or above as a console error.
        for status, url in self.expected:
            if location == url and f"status of {status} " in message.text:
                return
        self.problems.append(f"console error at {location}: {message.text}")

    def _on_page_error(self, error):
        self.problems.append(f"uncaught JavaScript error: {error}")

    def _on_request_failed(self, request):
        self.problems.append(
            f"request failed: {request.method} {request.url}: {request.failure}"
        )

    def _on_response(self, response):
        if response.status < 400:
            return
        if (response.status, response.url) in self.expected:
            return
        self.problems.append(
            f"HTTP {response.status} for {response.request.method} {response.url}"
        )
