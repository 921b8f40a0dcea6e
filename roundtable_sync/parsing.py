"""Parse decoded Roundtable API responses into plain dataclasses.

The parser is strict about types and tolerant about change. A value of the
wrong type is dropped (stored as None or left out) with a warning, never
coerced, so a risk score is either the number Roundtable sent or missing.
Unknown fields, check names, check statuses and recommended actions are kept
verbatim because Roundtable adds them without notice. Only a body that cannot
be used at all raises InvalidResponseError.
"""

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from roundtable_sync.errors import InvalidResponseError

logger = logging.getLogger(__name__)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Event:
    """One visitor action, from an events response or a session's user_logs."""

    action: str | None
    user_time: str | None
    # Milliseconds since the epoch, UTC. user_time is a display string in the
    # visitor's local time without an offset, so this is the one to trust.
    unix_timestamp: int | None

    @property
    def timestamp(self) -> datetime | None:
        """The aware UTC datetime of unix_timestamp, or None."""
        if self.unix_timestamp is None:
            return None
        return _datetime_from_millis(self.unix_timestamp)


@dataclass
class Session:
    """One session as Roundtable reports it."""

    session_id: str
    tags: list[str] | None
    risk_score: int | None
    risk_explanation: str | None
    recommended_action: str | None
    biometric_checks: dict[str, str] | None
    device_checks: dict[str, str] | None
    # Deprecated by Roundtable in favour of the events endpoint.
    user_logs: list[Event] | None
    # Present on the /report response only.
    user_id: str | None
    raw: dict = field(repr=False)

    @property
    def earliest_log_time(self) -> datetime | None:
        """The earliest timestamp in user_logs, or None if there is none."""
        times = [event.timestamp for event in self.user_logs or ()]
        times = [time for time in times if time is not None]
        return min(times, default=None)


@dataclass
class SessionList:
    """The sessions of one user or one tag."""

    owner: str | None
    sessions: list[Session]
    warnings: list[str]
    # Items in the response's sessions array, malformed ones and repeats
    # included: the API's page limit applies to this count.
    item_count: int = 0


@dataclass
class EventList:
    """The events of one session."""

    session_id: str | None
    event_count: int | None
    events: list[Event]
    warnings: list[str]


class _Warnings(list):
    """Warning messages that are also logged once each, as they are added."""

    def add(self, template, *args):
        logger.warning(template, *args)
        self.append(template % args)


class _SkipSession(Exception):
    pass


def parse_session_list(payload, owner_key):
    """Parse a sessions list: owner_key is "user_id" or "tag".

    Sessions that repeat a session_id are reduced to one: the last copy wins
    and keeps the position of the first.
    """
    body = _require_object(payload, "sessions list")
    sessions_value = body.get("sessions")
    if not isinstance(sessions_value, list):
        raise InvalidResponseError(
            f"Roundtable returned a sessions list whose 'sessions' field is "
            f"{_describe(sessions_value)}, not a list."
        )

    warnings = _Warnings()
    owner, _ = _storable(body.get(owner_key))
    if owner is not None and not isinstance(owner, str):
        warnings.add("The response's %s is %r, not a string.", owner_key, owner)
        owner = None
    kind = owner_key.removesuffix("_id")
    context = (
        f"{kind} {owner!r}" if owner is not None else f"the {kind} sessions response"
    )

    sessions = {}
    copies = Counter()
    for index, item in enumerate(sessions_value):
        try:
            session = _parse_session(item, warnings, context, index)
        except _SkipSession:
            continue
        sessions[session.session_id] = session
        copies[session.session_id] += 1

    # One warning per repeated ID, however many copies, to keep logs short.
    for session_id, count in copies.items():
        if count > 1:
            warnings.add(
                "Session %r of %s appears %d times; the last copy was kept.",
                session_id,
                context,
                count,
            )
    return SessionList(
        owner=owner,
        sessions=list(sessions.values()),
        warnings=warnings,
        item_count=len(sessions_value),
    )


def parse_session(payload):
    """Parse one session report, logging any warnings.

    Raise InvalidResponseError if the body is not an object with a usable
    session_id.
    """
    body = _require_object(payload, "session report")
    session_id = body.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        raise InvalidResponseError(
            f"Roundtable returned a session report whose session_id is "
            f"{session_id!r:.80}, not a non-empty string."
        )
    return _parse_session(body, _Warnings(), "the report", index=None)


def parse_events(payload):
    """Parse a session's events response."""
    body = _require_object(payload, "events list")
    events_value = body.get("events")
    if not isinstance(events_value, list):
        raise InvalidResponseError(
            f"Roundtable returned an events list whose 'events' field is "
            f"{_describe(events_value)}, not a list."
        )

    warnings = _Warnings()
    body, replaced = _storable(body)
    events_value = body["events"]
    session_id = body.get("session_id")
    if replaced:
        warnings.add(
            "The events of session %r contain %d NUL or lone surrogate "
            "character(s), which databases cannot store; each is stored as U+FFFD.",
            session_id,
            replaced,
        )
    if session_id is not None and not isinstance(session_id, str):
        warnings.add(
            "The events response's session_id is %r, not a string.", session_id
        )
        session_id = None
    context = f"session {session_id!r}"

    event_count = body.get("event_count")
    if event_count is not None and not _is_int(event_count):
        warnings.add(
            "The event_count of %s is %r, not an integer.", context, event_count
        )
        event_count = None

    events = _parse_events(events_value, warnings, context)
    if event_count is not None and event_count != len(events_value):
        warnings.add(
            "The event_count of %s is %d but the response contains %d events.",
            context,
            event_count,
            len(events_value),
        )
    return EventList(
        session_id=session_id, event_count=event_count, events=events, warnings=warnings
    )


def _parse_session(item, warnings, context, index):
    item, replaced = _storable(item)
    if replaced:
        session_id = item.get("session_id") if isinstance(item, dict) else None
        warnings.add(
            "Session %r of %s contains %d NUL or lone surrogate character(s), "
            "which databases cannot store; each is stored as U+FFFD.",
            session_id,
            context,
            replaced,
        )
    if not isinstance(item, dict):
        warnings.add(
            "Skipped item %d of %s: it is %s, not an object.",
            index,
            context,
            _describe(item),
        )
        raise _SkipSession
    session_id = item.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        warnings.add(
            "Skipped item %d of %s: its session_id is %r, not a non-empty string.",
            index,
            context,
            session_id,
        )
        raise _SkipSession

    where = f"session {session_id!r} of {context}"
    return Session(
        session_id=session_id,
        tags=_parse_tags(item.get("tags"), warnings, where),
        risk_score=_parse_risk_score(item.get("risk_score"), warnings, where),
        risk_explanation=_parse_str(item, "risk_explanation", warnings, where),
        recommended_action=_parse_str(item, "recommended_action", warnings, where),
        biometric_checks=_parse_checks(item, "biometric_checks", warnings, where),
        device_checks=_parse_checks(item, "device_checks", warnings, where),
        user_logs=_parse_user_logs(item.get("user_logs"), warnings, where),
        user_id=_parse_str(item, "user_id", warnings, where),
        raw=item,
    )


def _parse_tags(value, warnings, where):
    if value is None:
        return None
    if not isinstance(value, list):
        warnings.add("The tags of %s are %s, not a list.", where, _describe(value))
        return None
    tags = []
    for tag in value:
        if isinstance(tag, str):
            tags.append(tag)
        else:
            warnings.add("Dropped tag %r of %s: it is not a string.", tag, where)
    return tags


def _parse_risk_score(value, warnings, where):
    if value is None:
        return None
    if _is_int(value) and 0 <= value <= 100:
        return value
    warnings.add(
        "The risk_score of %s is %r, not an integer from 0 to 100; "
        "it is stored as missing.",
        where,
        value,
    )
    return None


def _parse_str(item, name, warnings, where):
    value = item.get(name)
    if value is None or isinstance(value, str):
        return value
    warnings.add("The %s of %s is %r, not a string.", name, where, value)
    return None


def _parse_checks(item, name, warnings, where):
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        warnings.add(
            "The %s of %s are %s, not an object.", name, where, _describe(value)
        )
        return None
    checks = {}
    for check, status in value.items():
        if isinstance(status, str):
            checks[check] = status
        else:
            warnings.add(
                "Dropped check %r of %s: its status is %r, not a string.",
                check,
                where,
                status,
            )
    return checks


def _parse_user_logs(value, warnings, where):
    if value is None:
        return None
    if not isinstance(value, list):
        warnings.add("The user_logs of %s are %s, not a list.", where, _describe(value))
        return None
    return _parse_events(value, warnings, where)


def _parse_events(items, warnings, where):
    events = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            warnings.add(
                "Dropped event %d of %s: it is %s, not an object.",
                index,
                where,
                _describe(item),
            )
            continue
        events.append(_parse_event(item, warnings, f"event {index} of {where}"))
    return events


def _parse_event(item, warnings, where):
    timestamp = item.get("unix_timestamp")
    if timestamp is not None and not _is_millis(timestamp):
        warnings.add(
            "The unix_timestamp of %s is %r, not an integer number of "
            "milliseconds in the datetime range; it is stored as missing.",
            where,
            timestamp,
        )
        timestamp = None
    return Event(
        action=_parse_str(item, "action", warnings, where),
        user_time=_parse_str(item, "user_time", warnings, where),
        unix_timestamp=timestamp,
    )


# PostgreSQL stores no NUL in text or jsonb, and no database driver encodes a
# lone surrogate (which json.loads makes from an unpaired \uD800 escape).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value):
    """Return (value, count) with NUL and lone surrogates replaced by U+FFFD.

    Walks decoded JSON: strings, object keys, lists and objects. The same
    rule applies on every database, so SQLite and PostgreSQL store the same
    text.
    """
    if isinstance(value, str):
        return _UNSTORABLE.subn("\ufffd", value)
    if isinstance(value, list):
        items = [_storable(item) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    if isinstance(value, dict):
        cleaned, total = {}, 0
        for key, item in value.items():
            key, key_count = _storable(key)
            item, item_count = _storable(item)
            cleaned[key] = item
            total += key_count + item_count
        return cleaned, total
    return value, 0


def _require_object(payload, expected):
    if not isinstance(payload, dict):
        raise InvalidResponseError(
            f"Roundtable returned {_describe(payload)} where a {expected} object "
            "was expected."
        )
    return payload


def _is_int(value):
    # bool is a subclass of int, but true and false are never a count or score.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_millis(value):
    if not _is_int(value):
        return False
    try:
        _datetime_from_millis(value)
    except OverflowError:
        return False
    return True


def _datetime_from_millis(millis):
    # timedelta keeps whole milliseconds exact, unlike a float division.
    return EPOCH + timedelta(milliseconds=millis)


def _describe(value):
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null or missing",
    }
    return names.get(type(value), type(value).__name__)
