"""Fault rules: ways the sandbox misbehaves on purpose, per user or globally.

A rule has a kind, optional parameters, an optional ``user_id`` (it then
applies only to that user's requests) and an optional ``count`` (it then
applies to the next N matching requests and expires). The first rule that
matches a request, in the order the rules were added, applies to it.
"""

import itertools
import re
import threading
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

DEFAULT_OVERSIZED_BYTES = 64 * 1024 * 1024


class FaultSpecError(ValueError):
    """A fault kind, parameter or value is invalid. The message names it."""


def _retry_after(value):
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value >= 0:
            return str(int(value))
    elif isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return text
        try:
            parsedate_to_datetime(text)
        except (TypeError, ValueError):
            pass
        else:
            return text
    raise FaultSpecError(
        f"invalid retry_after {value!r}: expected a number of seconds or an "
        "HTTP date such as 'Wed, 21 Oct 2026 07:28:00 GMT'"
    )


def _seconds(name):
    def parse(value):
        number = _number(name, value, float)
        if not 0 <= number <= 3600:
            raise FaultSpecError(
                f"invalid {name} {value!r}: expected 0 to 3600 seconds"
            )
        return number

    return parse


def _status(name, low, high):
    def parse(value):
        number = _number(name, value, int)
        if not low <= number <= high:
            raise FaultSpecError(
                f"invalid {name} {value!r}: expected a status from {low} to {high}"
            )
        return number

    return parse


def _size(value):
    number = _number("size_bytes", value, int)
    if number < 64:
        raise FaultSpecError(f"invalid size_bytes {value!r}: expected at least 64")
    return number


def _flag(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes"}:
        return True
    if text in {"0", "false", "no"}:
        return False
    raise FaultSpecError(f"invalid content_length {value!r}: expected true or false")


def _location(value):
    if not isinstance(value, str) or not value.strip():
        raise FaultSpecError(f"invalid location {value!r}: expected a URL or path")
    if any(c in value for c in "\r\n"):
        raise FaultSpecError(f"invalid location {value!r}: contains a line break")
    return value.strip()


def _number(name, value, kind):
    if isinstance(value, bool):
        raise FaultSpecError(f"invalid {name} {value!r}: expected a number")
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise FaultSpecError(f"invalid {name} {value!r}: expected a number") from None
    if kind is int and isinstance(value, float) and value != number:
        raise FaultSpecError(f"invalid {name} {value!r}: expected a whole number")
    return number


# Each kind's parameters: name -> parser that validates and normalises a value.
KINDS = {
    "rate_limit": {"retry_after": _retry_after},
    "server_error": {
        "status": _status("status", 500, 599),
        "retry_after": _retry_after,
    },
    "slow": {"delay": _seconds("delay")},
    "stall": {"delay": _seconds("delay")},
    "truncated": {},
    "not_json": {},
    "wrong_shape": {},
    "oversized": {"size_bytes": _size, "content_length": _flag},
    "key_revoked": {},
    "not_found": {},
    "redirect": {
        "location": _location,
        "status": _status("status", 300, 399),
    },
}
DEFAULTS = {
    "server_error": {"status": 503},
    "slow": {"delay": 5.0},
    "stall": {"delay": 30.0},
    "oversized": {"size_bytes": DEFAULT_OVERSIZED_BYTES, "content_length": True},
    "redirect": {"status": 302},
}
REQUIRED = {"redirect": {"location"}}


@dataclass
class FaultRule:
    id: int
    kind: str
    user_id: str | None = None
    count: int | None = None  # remaining matches before it expires; None: never
    params: dict = field(default_factory=dict)

    def as_dict(self):
        return {
            "id": self.id,
            "kind": self.kind,
            "user_id": self.user_id,
            "count": self.count,
            "params": dict(self.params),
        }


def validate(kind, user_id=None, count=None, params=None):
    """Return (kind, user_id, count, params) checked and with defaults filled.

    Raises FaultSpecError naming the invalid kind, parameter or value.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise FaultSpecError(
            f"unknown fault kind {kind!r}: expected one of {', '.join(KINDS)}"
        )
    if user_id is not None and (not isinstance(user_id, str) or not user_id):
        raise FaultSpecError(
            f"invalid user_id {user_id!r}: expected a non-empty string"
        )
    if count is not None:
        count = _number("count", count, int)
        if count < 1:
            raise FaultSpecError(f"invalid count {count!r}: expected 1 or more")
    parsers = KINDS[kind]
    checked = dict(DEFAULTS.get(kind, {}))
    for name, value in (params or {}).items():
        if name not in parsers:
            expected = ", ".join(parsers) or "no parameters"
            raise FaultSpecError(
                f"unknown parameter {name!r} for {kind}: expected {expected}"
            )
        checked[name] = parsers[name](value)
    missing = REQUIRED.get(kind, set()) - checked.keys()
    if missing:
        raise FaultSpecError(f"missing parameter {sorted(missing)[0]!r} for {kind}")
    return kind, user_id, count, checked


# Split on the commas that start a new NAME=, so an HTTP date keeps its comma.
_PARAM_SEPARATOR = re.compile(r",(?=\s*\w+=)")


def parse_spec(spec):
    """Parse ``KIND[:PARAM=VALUE,...]`` into a spec dict for ``add_spec``.

    ``user_id`` and ``count`` may appear among the parameters. Raises
    FaultSpecError for a malformed spec, and ``add_spec`` validates the values.
    """
    kind, _, rest = spec.partition(":")
    parsed = {"kind": kind.strip()}
    params = {}
    if rest.strip():
        for item in _PARAM_SEPARATOR.split(rest):
            name, equals, value = item.partition("=")
            if not equals or not name.strip():
                raise FaultSpecError(
                    f"invalid fault parameter {item!r}: expected PARAM=VALUE"
                )
            params[name.strip()] = value
    for name in ("user_id", "count"):
        if name in params:
            parsed[name] = params.pop(name)
    parsed["params"] = params
    return parsed


class FaultRules:
    """The sandbox's active fault rules. Safe to use from several threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules = []
        self._ids = itertools.count(1)

    def add(self, kind, /, user_id=None, count=None, **params):
        """Validate and add a rule; return it as a dict."""
        kind, user_id, count, params = validate(kind, user_id, count, params)
        with self._lock:
            rule = FaultRule(next(self._ids), kind, user_id, count, params)
            self._rules.append(rule)
            return rule.as_dict()

    def add_spec(self, spec):
        """Add a rule from a dict with kind, user_id, count and params."""
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise FaultSpecError(f"invalid params {params!r}: expected an object")
        for name in ("user_id", "count"):
            if name in params:
                raise FaultSpecError(
                    f"invalid parameter {name!r}: give it beside kind, not in params"
                )
        return self.add(
            spec.get("kind"),
            user_id=spec.get("user_id"),
            count=spec.get("count"),
            **params,
        )

    def clear(self):
        """Remove every rule; return how many there were."""
        with self._lock:
            removed = len(self._rules)
            self._rules.clear()
            return removed

    def take(self, user_id):
        """Return the rule for a request about ``user_id`` (or None), counting it.

        ``user_id`` is None for requests about no particular user, which only
        rules without a user_id match.
        """
        with self._lock:
            for rule in self._rules:
                if rule.user_id is not None and rule.user_id != user_id:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                return FaultRule(
                    rule.id, rule.kind, rule.user_id, rule.count, rule.params
                )
            return None

    def list(self):
        """Return the active rules as dicts, in the order they apply."""
        with self._lock:
            return [rule.as_dict() for rule in self._rules]
