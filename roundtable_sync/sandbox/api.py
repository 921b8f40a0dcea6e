"""The emulated API: request targets to endpoints, endpoints to JSON payloads.

Paths are split on ``/`` before percent-decoding, so an ID sent as one
encoded segment (``a%2Fb``) stays one ID, as the real API expects.
"""

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from roundtable_sync.sandbox import data, hostile


class RouteError(Exception):
    """A request to a known endpoint that cannot be served as sent."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Route:
    endpoint: str  # "user_sessions", "session_report", "session_events", "tags"
    value: str  # the decoded user ID, session ID or tag

    @property
    def user_id(self):
        """The user the request is about, or None (tags, unknown sessions)."""
        if self.endpoint == "user_sessions":
            return self.value
        if self.endpoint in ("session_report", "session_events"):
            key = data.decode_session_id(self.value)
            return key.user_id if key else None
        return None

    @property
    def is_oversized(self):
        return self.endpoint == "user_sessions" and self.value == hostile.OVERSIZED_USER


# (segments with None where the ID goes, endpoint, query parameter or None)
_PATTERNS = (
    (("v1", "users", None, "sessions"), "user_sessions", None),
    (("v1", "users", "sessions"), "user_sessions", "userId"),
    (("v1", "sessions", None, "report"), "session_report", None),
    (("v1", "sessions", "report"), "session_report", "sessionId"),
    (("v1", "sessions", None, "events"), "session_events", None),
    (("v1", "tags", None, "sessions"), "tags", None),
)


def split_target(target):
    """Split a raw request target into (raw path, raw query)."""
    path, _, query = target.partition("?")
    return path, query


def resolve(target):
    """Return the Route for a raw request target, or None for unknown paths.

    Raises RouteError (400) for invalid percent-encoding or a missing query
    parameter.
    """
    path, query = split_target(target)
    segments = path.split("/")[1:]
    for pattern, endpoint, parameter in _PATTERNS:
        if len(pattern) != len(segments):
            continue
        value = None
        for expected, segment in zip(pattern, segments, strict=True):
            if expected is None:
                value = _decode_segment(segment)
            elif expected != segment:
                break
        else:
            if parameter is not None:
                value = _query_value(query, parameter)
            if not value:
                return None
            return Route(endpoint, value)
    return None


def _decode_segment(segment):
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise RouteError(
            400, f"invalid percent-encoding in path segment {segment!r}: not UTF-8"
        ) from None


def _query_value(query, name):
    try:
        values = parse_qs(query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise RouteError(400, f"invalid percent-encoding in query {query!r}") from None
    value = values.get(name, [""])[0]
    if not value:
        raise RouteError(400, f"missing query parameter {name!r}")
    return value


def render(route, now, known_users):
    """Return (status, payload) for a route at time ``now``.

    ``known_users`` lists the user IDs the tags endpoint searches. Hostile
    fixture users and their sessions come from fixed payloads.
    """
    if route.endpoint == "user_sessions" and hostile.is_hostile(route.value):
        return 200, hostile.user_sessions(route.value, now)
    if route.endpoint in ("session_report", "session_events"):
        fixed = _render_hostile_session(route, now)
        if fixed is not None:
            return 200, fixed
    if route.endpoint == "user_sessions":
        sessions = data.user_sessions(route.value, now)
        return 200, {"user_id": route.value, "sessions": sessions}
    if route.endpoint == "tags":
        sessions = data.tag_sessions(route.value, known_users, now)
        return 200, {"tag": route.value, "sessions": sessions}
    if route.endpoint == "session_report":
        report = data.session_report(route.value, now)
        if report is None:
            return 404, {"error": "session not found"}
        return 200, report
    events = data.session_events(route.value, now)
    if events is None:
        return 404, {"error": "session not found"}
    return 200, {
        "session_id": route.value,
        "event_count": len(events),
        "events": events,
    }


def _render_hostile_session(route, now):
    if route.endpoint == "session_report":
        return hostile.session_report(route.value, now)
    events = hostile.session_events(route.value, now)
    if events is None:
        return None
    return {"session_id": route.value, "event_count": len(events), "events": events}
