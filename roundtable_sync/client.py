"""HTTP client of the Roundtable API.

Each public method makes one API call: a GET with a bounded number of
attempts, all within one deadline, and returns the parsed response or raises
one of the errors in roundtable_sync.errors. The client imports no models, so
the worker and the tests can use it without a database.
"""

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urljoin, urlsplit

import requests
import tenacity
import urllib3
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from roundtable_sync import errors
from roundtable_sync.parsing import (
    SessionList,
    parse_events,
    parse_session,
    parse_session_list,
)

logger = logging.getLogger(__name__)

CHUNK_BYTES = 64 * 1024
MAX_REDIRECTS = 3
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
DEFAULT_PORTS = {"http": 80, "https": 443}
# A longer Retry-After is read as this many seconds, so that a huge value
# cannot overflow a datetime. The caller gets a retry_at a day away.
MAX_RETRY_AFTER = 24 * 3600


def _utc_now():
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Target:
    """One API call: the endpoint's name, whom it is about, and its path."""

    endpoint: str
    subject: str
    path: str


@dataclass(frozen=True)
class SessionsResponse:
    """A sessions list response, read in full within the size cap, not decoded.

    ``content`` is the body as received, so a caller can tell an unchanged
    response from a changed one before paying for ``parse()``.
    """

    content: bytes
    _target: _Target
    _owner_key: str

    def parse(self) -> SessionList:
        """Decode and parse the body, raising InvalidResponseError if unusable."""
        payload = _decode_json(self._target, self.content)
        return parse_session_list(payload, self._owner_key)


class _BearerAuth(requests.auth.AuthBase):
    # Sending the key as per-request auth, not as a header, also stops
    # requests from replacing it with credentials from a ~/.netrc file.
    def __init__(self, key):
        self._key = key

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._key}"
        return request

    def __repr__(self):
        return "<BearerAuth>"


class _Transient(Exception):
    """A failure that another attempt may fix.

    ``problem`` completes "Roundtable ..." in messages, ``error_class`` is the
    public error raised when no attempt is left, and ``retry_after`` is the
    wait in seconds that the API requested, if any.
    """

    def __init__(self, error_class, problem, *, status=None, retry_after=None):
        super().__init__(problem)
        self.error_class = error_class
        self.problem = problem
        self.status = status
        self.retry_after = retry_after


ADVICE = {
    errors.RateLimitedError: "Roundtable is rate-limiting this API key: try later.",
    errors.ServerError: "Roundtable has a server problem: try later.",
    errors.ApiConnectionError: "Check the network and ROUNDTABLE_API_URL.",
    errors.ApiTimeoutError: "Try later, or raise ROUNDTABLE_READ_TIMEOUT.",
}


class RoundtableClient:
    """Client of the Roundtable API for one API key and base URL.

    ``throttle``, when given, has a ``reserve()`` method that returns the
    seconds to wait before the next request, and is called before every HTTP
    request, retries and redirects included (see roundtable_sync.throttle).
    ``monotonic``, ``sleep``, ``now`` and ``rng`` are the clocks and the
    random source, injectable so tests control time.
    """

    def __init__(
        self,
        api_key,
        base_url,
        *,
        connect_timeout=5.0,
        read_timeout=30.0,
        deadline=60.0,
        max_attempts=4,
        max_response_bytes=50 * 1024 * 1024,
        max_retry_wait=60.0,
        session=None,
        throttle=None,
        monotonic=time.monotonic,
        sleep=time.sleep,
        now=_utc_now,
        rng=random.random,
    ):
        _validate_api_key(api_key)
        self.base_url = _validate_base_url(base_url)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.max_attempts = max_attempts
        self.max_response_bytes = max_response_bytes
        self.max_retry_wait = max_retry_wait
        self.session = session if session is not None else requests.Session()
        self.throttle = throttle
        self._auth = _BearerAuth(api_key)
        self._monotonic = monotonic
        self._sleep = sleep
        self._now = now
        self._rng = rng
        if max_attempts < 1:
            raise ValueError(f"max_attempts is {max_attempts}: it must be 1 or more.")

    @classmethod
    def from_settings(cls, **overrides):
        """Create a client from the ROUNDTABLE_* settings; overrides win."""
        # Imported here because the throttle uses the database and this
        # module imports no models.
        from roundtable_sync.throttle import RequestThrottle

        options = {
            "api_key": settings.ROUNDTABLE_API_KEY,
            "base_url": settings.ROUNDTABLE_API_URL,
            "connect_timeout": settings.ROUNDTABLE_CONNECT_TIMEOUT,
            "read_timeout": settings.ROUNDTABLE_READ_TIMEOUT,
            "deadline": settings.ROUNDTABLE_REQUEST_DEADLINE,
            "max_attempts": settings.ROUNDTABLE_MAX_ATTEMPTS,
            "max_response_bytes": int(
                settings.ROUNDTABLE_MAX_RESPONSE_MB * 1024 * 1024
            ),
            "throttle": RequestThrottle.from_settings(),
        }
        options.update(overrides)
        if not options["api_key"]:
            raise ImproperlyConfigured(
                "ROUNDTABLE_API_KEY is not set. Set it to the secret key from "
                "the Roundtable account page."
            )
        return cls(**options)

    def __repr__(self):
        return f"<RoundtableClient {self.base_url}>"

    def close(self):
        """Close the pooled connections of the HTTP session."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def user_sessions(self, user_id):
        """Return the user's most recent sessions (up to 100) as a SessionList."""
        return self.user_sessions_response(user_id).parse()

    def user_sessions_response(self, user_id):
        """Fetch the user's most recent sessions as an undecoded SessionsResponse.

        Raises the same errors as user_sessions, except that a body that is
        not valid UTF-8 or JSON, or not a sessions list, raises
        InvalidResponseError from parse() instead.
        """
        path = _build_path(
            "user", user_id, "/v1/users/{}/sessions", "/v1/users/sessions?userId={}"
        )
        target = _Target("user sessions", f"user {user_id!r}", path)
        return SessionsResponse(self._get_body(target), target, "user_id")

    def session_events(self, session_id):
        """Return the session's events as an EventList."""
        path = _build_path("session", session_id, "/v1/sessions/{}/events")
        target = _Target("session events", f"session {session_id!r}", path)
        return parse_events(self._get_json(target))

    def session_report(self, session_id):
        """Return one session, with its user_id, as a Session."""
        path = _build_path(
            "session",
            session_id,
            "/v1/sessions/{}/report",
            "/v1/sessions/report?sessionId={}",
        )
        target = _Target("session report", f"session {session_id!r}", path)
        return parse_session(self._get_json(target))

    def tag_sessions(self, tag):
        """Return the most recent sessions (up to 100) with the tag."""
        path = _build_path("tag", tag, "/v1/tags/{}/sessions")
        target = _Target("tag sessions", f"tag {tag!r}", path)
        return parse_session_list(self._get_json(target), "tag")

    # Attempts and retries

    def _get_json(self, target):
        return _decode_json(target, self._get_body(target))

    def _get_body(self, target):
        deadline_at = self._monotonic() + self.deadline

        def stop(retry_state):
            if retry_state.attempt_number >= self.max_attempts:
                return True
            return retry_state.upcoming_sleep >= deadline_at - self._monotonic()

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            wait=self._wait,
            stop=stop,
            sleep=self._sleep,
            before_sleep=lambda retry_state: self._log_retry(target, retry_state),
            reraise=True,
        )
        try:
            return retrying(self._attempt, target, deadline_at)
        except _Transient as transient:
            attempts = retrying.statistics["attempt_number"]
            raise self._give_up(target, transient, attempts) from transient

    def _wait(self, retry_state):
        transient = retry_state.outcome.exception()
        if transient.retry_after is not None:
            return transient.retry_after
        # Exponential backoff from 1 s with up to 1 s of jitter, so workers
        # that failed together do not retry together.
        backoff = 2 ** (retry_state.attempt_number - 1) + self._rng()
        return min(self.max_retry_wait, backoff)

    def _log_retry(self, target, retry_state):
        logger.warning(
            "Roundtable %s on attempt %d of %d of the %s request for %s; "
            "retrying in %.1f s.",
            retry_state.outcome.exception().problem,
            retry_state.attempt_number,
            self.max_attempts,
            target.endpoint,
            target.subject,
            retry_state.upcoming_sleep,
        )

    def _give_up(self, target, transient, attempts):
        if attempts >= self.max_attempts:
            when = f"on all {attempts} attempts" if attempts > 1 else "on its attempt"
            reason = ""
        else:
            when = f"on attempt {attempts}"
            reason = f", and waiting again would pass the {self.deadline:g} s deadline"
        message = (
            f"Roundtable {transient.problem} {when} of the {target.endpoint} "
            f"request for {target.subject}{reason}. "
            f"{ADVICE[transient.error_class]}"
        )
        retry_at = None
        if transient.retry_after is not None:
            retry_at = self._now() + timedelta(seconds=transient.retry_after)
            message += f" Roundtable requested a wait until {_format_time(retry_at)}."
        return transient.error_class(
            message, status=transient.status, retry_at=retry_at
        )

    def _attempt(self, target, deadline_at):
        url = self.base_url + target.path
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._send(target, url, deadline_at)
            with response:
                if response.status_code not in REDIRECT_STATUSES:
                    self._check_status(target, response)
                    return self._read_checked_body(target, response, deadline_at)
                url = self._redirect_url(target, url, response)
        raise errors.RedirectRejectedError(
            f"Roundtable redirected the {target.endpoint} request for "
            f"{target.subject} more than {MAX_REDIRECTS} times. "
            "Check ROUNDTABLE_API_URL."
        )

    def _time_left(self, target, deadline_at):
        left = deadline_at - self._monotonic()
        if left <= 0:
            raise errors.ApiTimeoutError(
                f"The Roundtable {target.endpoint} request for {target.subject} "
                f"did not finish within the {self.deadline:g} s deadline. Try "
                "later, or raise ROUNDTABLE_REQUEST_DEADLINE."
            )
        return left

    # One HTTP exchange

    def _wait_for_slot(self, target, deadline_at):
        if self.throttle is None:
            return
        while True:
            # Raises once the deadline has passed, which also bounds the
            # reservations of a process that keeps waking up late.
            left = self._time_left(target, deadline_at)
            wait = self.throttle.reserve()
            if wait > 0 and wait >= left:
                raise errors.ApiTimeoutError(
                    f"The Roundtable {target.endpoint} request for "
                    f"{target.subject} would wait {wait:.1f} s for its turn "
                    "under ROUNDTABLE_REQUESTS_PER_SECOND, past the "
                    f"{self.deadline:g} s deadline. Raise the limit or lower "
                    "ROUNDTABLE_WORKERS."
                )
            if wait > 0:
                self._sleep(wait)
            # Sent this late, the request could make one second hold more
            # starts than the limit, so it takes a new turn.
            if not self.throttle.missed():
                return
            logger.debug(
                "%s request for %s woke up late for its turn; reserving again",
                target.endpoint,
                target.subject,
            )

    def _send(self, target, url, deadline_at):
        self._wait_for_slot(target, deadline_at)
        left = self._time_left(target, deadline_at)
        # NOTE: until the headers are in, the read timeout applies to each
        # socket read, so a server trickling its status line and headers a
        # byte at a time can hold the call past the deadline. The body is
        # read against the deadline itself.
        timeout = (min(self.connect_timeout, left), min(self.read_timeout, left))
        try:
            return self.session.get(
                url,
                headers={"Accept": "application/json"},
                auth=self._auth,
                timeout=timeout,
                stream=True,
                allow_redirects=False,
            )
        except requests.exceptions.ConnectTimeout as exc:
            problem = f"did not accept the connection within {timeout[0]:g} s"
            raise _Transient(errors.ApiTimeoutError, problem) from exc
        except requests.exceptions.ReadTimeout as exc:
            problem = f"did not answer within {timeout[1]:g} s"
            raise _Transient(errors.ApiTimeoutError, problem) from exc
        except requests.exceptions.SSLError as exc:
            # A certificate or TLS version problem does not fix itself.
            raise errors.ApiConnectionError(
                f"The TLS connection to {_origin_text(url)} failed on the "
                f"{target.endpoint} request for {target.subject}: {exc}. "
                "Check ROUNDTABLE_API_URL and the system's CA certificates."
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            problem = f"could not be reached at {_origin_text(url)}"
            raise _Transient(errors.ApiConnectionError, problem) from exc
        except requests.exceptions.RequestException as exc:
            raise errors.ApiConnectionError(
                f"The {target.endpoint} request for {target.subject} could not "
                f"be sent: {exc}. Check ROUNDTABLE_API_URL."
            ) from exc

    def _check_status(self, target, response):
        status = response.status_code
        if 200 <= status < 300:
            return
        if status in (401, 403):
            raise errors.KeyRejectedError(
                f"Roundtable rejected the API key (HTTP {status}) on the "
                f"{target.endpoint} request for {target.subject}. "
                "Check ROUNDTABLE_API_KEY.",
                status=status,
            )
        if status == 404:
            raise errors.NotFoundError(
                f"Roundtable has no {target.subject} (HTTP 404 on the "
                f"{target.endpoint} request). Check the ID."
            )
        if status == 429:
            raise self._transient_or_deferred(target, response, errors.RateLimitedError)
        if 400 <= status < 500:
            raise errors.RequestRejectedError(
                f"Roundtable rejected the {target.endpoint} request for "
                f"{target.subject} (HTTP {status}); retrying will not help. "
                "Check the ID.",
                status=status,
            )
        if 500 <= status < 600:
            raise self._transient_or_deferred(target, response, errors.ServerError)
        raise errors.InvalidResponseError(
            f"Roundtable responded to the {target.endpoint} request for "
            f"{target.subject} with the unexpected status HTTP {status}.",
            status=status,
        )

    def _transient_or_deferred(self, target, response, error_class):
        status = response.status_code
        retry_after = self._retry_after_seconds(response)
        if retry_after is None or retry_after <= self.max_retry_wait:
            problem = f"answered HTTP {status}"
            return _Transient(
                error_class, problem, status=status, retry_after=retry_after
            )
        retry_at = self._now() + timedelta(seconds=retry_after)
        return error_class(
            f"The Roundtable {target.endpoint} request for {target.subject} is "
            f"deferred until {_format_time(retry_at)}: Roundtable responded "
            f"HTTP {status} and requested a wait of {retry_after:g} s.",
            status=status,
            retry_at=retry_at,
        )

    def _retry_after_seconds(self, response):
        """Return the Retry-After wait in seconds, or None if absent or invalid."""
        value = response.headers.get("Retry-After", "").strip()
        if not value:
            return None
        if value.isascii() and value.isdigit():
            return min(float(value), MAX_RETRY_AFTER)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            logger.warning("Ignored the invalid Retry-After header %r.", value)
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - self._now()).total_seconds()
        return min(max(0.0, seconds), MAX_RETRY_AFTER)

    def _redirect_url(self, target, url, response):
        location = response.headers.get("Location")
        if not location:
            raise errors.InvalidResponseError(
                f"Roundtable responded to the {target.endpoint} request for "
                f"{target.subject} with HTTP {response.status_code} but no "
                "Location header."
            )
        next_url = urljoin(url, location)
        if _origin(next_url) != _origin(self.base_url):
            raise errors.RedirectRejectedError(
                f"Roundtable redirected the {target.endpoint} request for "
                f"{target.subject} to {_origin_text(next_url)}, another origin "
                f"than {_origin_text(self.base_url)}. The client does not follow "
                "it, so that the API key is not sent there. If the API has "
                "moved, update ROUNDTABLE_API_URL.",
                status=response.status_code,
            )
        return next_url

    def _read_checked_body(self, target, response, deadline_at):
        length = response.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit():
            if int(length) > self.max_response_bytes:
                raise self._too_large(target, f"Content-Length: {length}")
        return self._read_body(target, response.raw, deadline_at)

    def _read_body(self, target, raw, deadline_at):
        # read1() returns what one socket read brings, so a server that
        # trickles the body cannot hold the call past the deadline, as
        # iter_content() could while it waits to fill a whole chunk.
        body = bytearray()
        while True:
            left = self._time_left(target, deadline_at)
            _set_read_timeout(raw, min(self.read_timeout, left))
            chunk = _read_chunk(raw)
            if not chunk:
                break
            body += chunk
            if len(body) > self.max_response_bytes:
                raise self._too_large(target, f"{len(body)} bytes read so far")
        raw.release_conn()
        return bytes(body)

    def _too_large(self, target, detail):
        return errors.ResponseTooLargeError(
            f"The Roundtable response to the {target.endpoint} request for "
            f"{target.subject} is larger than the cap of "
            f"{self.max_response_bytes} bytes ({detail}). Raise "
            "ROUNDTABLE_MAX_RESPONSE_MB if responses this large are expected."
        )


def _read_chunk(raw):
    try:
        return raw.read1(CHUNK_BYTES, decode_content=True)
    except urllib3.exceptions.ReadTimeoutError as exc:
        problem = "stopped sending the response body before it was complete"
        raise _Transient(errors.ApiTimeoutError, problem) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise errors.InvalidResponseError(
            f"Roundtable sent a response body that could not be decompressed: {exc}"
        ) from exc
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError) as exc:
        problem = "closed the connection before the whole response arrived"
        raise _Transient(errors.ApiConnectionError, problem) from exc


def _set_read_timeout(raw, seconds):
    # The timeout given to requests applies to each socket read from the
    # start of the request. Shrinking it to the time left keeps the last
    # read of a slow body from running past the deadline.
    connection = raw.connection
    sock = getattr(connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _decode_json(target, body):
    where = f"The Roundtable response to the {target.endpoint} request for "
    where += target.subject
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise errors.InvalidResponseError(
            f"{where} is not valid UTF-8 (at byte {exc.start})."
        ) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise errors.InvalidResponseError(
            f"{where} is not valid JSON ({exc.msg} at character {exc.pos})."
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise errors.InvalidResponseError(
            f"{where} is not valid JSON ({exc})."
        ) from exc


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON value")


def _build_path(kind, value, path_form, query_form=None):
    """Return the request path with the ID percent-encoded as one segment.

    "." and ".." cannot be path segments, because HTTP clients and proxies
    remove them as dot segments, so they use the query form where the API has
    one, and raise InvalidIdError where it has none.
    """
    if not isinstance(value, str):
        raise TypeError(f"The {kind} ID must be a string, not {type(value).__name__}.")
    if not value:
        raise errors.InvalidIdError(f"The {kind} ID is empty.")
    encoded = quote(value, safe="")
    if value not in (".", ".."):
        return path_form.format(encoded)
    if query_form is None:
        raise errors.InvalidIdError(
            f"The {kind} ID {value!r} cannot be requested: this endpoint takes "
            "the ID only in the URL path, where it would read as a dot segment."
        )
    return query_form.format(encoded)


def _origin(url):
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, parts.hostname, parts.port or DEFAULT_PORTS.get(scheme)


def _origin_text(url):
    scheme, host, port = _origin(url)
    return f"{scheme}://{host}:{port}"


def _format_time(moment):
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"


def _validate_api_key(api_key):
    # The messages never echo the key.
    if not isinstance(api_key, str) or not api_key:
        raise ValueError("The Roundtable API key is empty or not a string.")
    if not api_key.isascii() or not api_key.isprintable() or " " in api_key:
        raise ValueError(
            "The Roundtable API key contains whitespace, control or non-ASCII "
            "characters. Copy it again from the Roundtable account page."
        )


def _validate_base_url(base_url):
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"The base URL {base_url!r} is not an http or https URL.")
    if parts.username or parts.password:
        # Not echoed: the user information may be a password.
        raise ValueError(
            "The base URL contains user information: give only the scheme, "
            "host, port and path."
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"The base URL {base_url!r} contains a query or fragment: give only "
            "the scheme, host, port and path."
        )
    return base_url.rstrip("/")
