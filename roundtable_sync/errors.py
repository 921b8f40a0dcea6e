"""Errors raised by the Roundtable API client.

Every message is written for the analyst who reads it on the watchlist page:
it says what failed and what to do, and never contains the API key.
"""


class RoundtableError(Exception):
    """Base class of every failure talking to the Roundtable API."""

    status = None

    def __init__(self, message, *, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status


class KeyRejectedError(RoundtableError):
    """The API responded 401 or 403: the key is wrong, revoked or lacks access."""


class NotFoundError(RoundtableError):
    """The API responded 404 for the requested user, session or tag."""

    status = 404


class RequestRejectedError(RoundtableError):
    """The API responded with another 4xx status, which retrying will not fix."""


class RetryLaterError(RoundtableError):
    """A temporary failure. ``retry_at`` is an aware UTC datetime or None.

    ``retry_at`` is set when the API asked for a wait (``Retry-After``) longer
    than the client waits inside one call: the caller should not ask again
    before that time.
    """

    def __init__(self, message, *, status=None, retry_at=None):
        super().__init__(message, status=status)
        self.retry_at = retry_at

    @property
    def deferred(self):
        return self.retry_at is not None


class RateLimitedError(RetryLaterError):
    """The API responded 429 on every attempt, or requested a long wait."""

    status = 429


class ServerError(RetryLaterError):
    """The API responded 5xx on every attempt, or requested a long wait."""


class ApiConnectionError(RetryLaterError):
    """The API could not be reached on any attempt."""


class ApiTimeoutError(RetryLaterError):
    """A request or the whole call exceeded its time limit."""


class ResponseTooLargeError(RoundtableError):
    """The response body exceeded the configured size cap."""


class InvalidResponseError(RoundtableError):
    """The response body is not JSON of the documented shape."""


class RedirectRejectedError(RoundtableError):
    """The API redirected to another origin, which would expose the key."""


class InvalidIdError(RoundtableError, ValueError):
    """The ID cannot be sent to the API.

    It is empty, or it is ``.`` or ``..`` on an endpoint that takes the ID only
    as a path segment, where clients and proxies read it as a dot segment.
    """
