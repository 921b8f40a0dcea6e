"""Deterministic, realistic Roundtable data: pure functions of (user ID, now).

Each user gets a persona and a session rate from a seeded RNG. Each UTC day of
a user has its own seeded RNG that fixes how many sessions start that day and
when, and each session has one that fixes its tags, score, checks and events.
A session appears once its start time has passed, so a dashboard polling the
sandbox receives new sessions as wall-clock time passes. Seeds come from blake2b,
never from Python's hash(), which is salted per process.

Nothing is stored: the same user and time give the same data after a restart.
The caches only avoid recomputing pure results.
"""

import base64
import hashlib
import heapq
import math
import random
import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import islice

from roundtable_sync.sandbox import checks
from roundtable_sync.sandbox.events import TAGS, draw_events, format_user_time

HISTORY = timedelta(days=120)
MAX_SESSIONS = 100
LIVE_TIMEOUT = timedelta(minutes=30)
# A live session's score is redrawn once per step.
SCORE_STEP = timedelta(minutes=3)
# Sessions that start after this have no deprecated user_logs field.
USER_LOGS_REMOVED = datetime(2026, 10, 5, tzinfo=UTC)

_DAY_MS = 86_400_000
_HISTORY_MS = HISTORY // timedelta(milliseconds=1)
_LIVE_MS = LIVE_TIMEOUT // timedelta(milliseconds=1)
_STEP_MS = SCORE_STEP // timedelta(milliseconds=1)
_USER_LOGS_REMOVED_MS = int(USER_LOGS_REMOVED.timestamp() * 1000)


@dataclass(frozen=True)
class Profile:
    persona: str  # "human", "bot" or "mixed"
    sessions_per_day: float
    utc_offset_minutes: int
    mobile_share: float
    vpn_share: float


DEMO_PROFILES = {
    "alice@example.com": Profile("human", 1.5, -300, 0.6, 0.03),
    "josé.garcía@example.es": Profile("human", 0.8, 60, 0.5, 0.4),
    "carol+shop@example.net": Profile("mixed", 4.0, 0, 0.3, 0.3),
    "reseller-42": Profile("mixed", 24.0, 480, 0.2, 0.5),
    # About one session every five minutes, so a demo sees new ones arrive.
    "bot-farm-7": Profile("bot", 288.0, 0, 0.05, 0.7),
}
DEMO_USER_IDS = list(DEMO_PROFILES)

_OFFSETS = (-480, -420, -360, -300, -240, -180, 0, 60, 120, 180, 330, 480, 540)
_TAG_WEIGHTS = {
    # Humans log in and shop, bots mostly create accounts and test cards.
    False: (35, 5, 20, 5, 10, 10, 8, 7),
    True: (25, 30, 15, 15, 3, 2, 8, 2),
}


@dataclass(frozen=True)
class SessionKey:
    """The user, UTC day and index within the day that a session ID encodes."""

    user_id: str
    day: int  # days since 1970-01-01 (UTC)
    index: int  # position among the day's sessions, by start time


@dataclass(frozen=True)
class _Traits:
    automated: bool
    tags: tuple
    mobile: bool
    vpn: bool
    score: int  # the final score, kept once the session is no longer live
    duration_ms: int
    action_shift: int
    action_unknown: bool


def _seed(*parts):
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        encoded = str(part).encode("utf-8")
        digest.update(len(encoded).to_bytes(4, "big"))
        digest.update(encoded)
    return int.from_bytes(digest.digest(), "big")


def _rng(*parts):
    return random.Random(_seed(*parts))


def _to_ms(moment):
    if moment.tzinfo is None:
        raise ValueError(f"now must be an aware datetime, got {moment!r}")
    return int(moment.timestamp() * 1000)


def _to_datetime(timestamp_ms):
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


@lru_cache(maxsize=4096)
def user_profile(user_id):
    """Return the persona, session rate and habits of any user ID."""
    if user_id in DEMO_PROFILES:
        return DEMO_PROFILES[user_id]
    rng = _rng("profile", user_id)
    persona = rng.choices(("human", "bot", "mixed"), weights=(72, 12, 16))[0]
    if persona == "bot":
        rate = rng.uniform(5, 30)
    elif persona == "mixed":
        rate = rng.uniform(1, 8)
    elif rng.random() < 0.9:
        rate = rng.uniform(0.2, 2.5)
    else:
        rate = rng.uniform(4, 8)
    return Profile(
        persona=persona,
        sessions_per_day=round(rate, 2),
        utc_offset_minutes=rng.choice(_OFFSETS),
        mobile_share=round(rng.uniform(0.05, 0.8), 2),
        vpn_share=0.7 if persona == "bot" else round(rng.uniform(0.0, 0.4), 2),
    )


@lru_cache(maxsize=65536)
def _day_starts(user_id, day):
    """Return the start times (ms) of a user's sessions on a UTC day, sorted."""
    profile = user_profile(user_id)
    rng = _rng("day", user_id, day)
    count = _poisson(rng, profile.sessions_per_day * rng.uniform(0.3, 1.7))
    starts = [
        day * _DAY_MS + _draw_second(rng, profile) * 1000 + rng.randrange(1000)
        for _ in range(count)
    ]
    return tuple(sorted(starts))


def _poisson(rng, mean):
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    # Knuth's method, fine for small means.
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _draw_second(rng, profile):
    if profile.persona == "bot":
        return rng.randrange(86400)
    while True:
        second = rng.randrange(86400)
        local_hour = (second // 60 + profile.utc_offset_minutes) // 60 % 24
        if 8 <= local_hour < 23 or rng.random() < 0.15:
            return second


# Starts every ID with a letter, because base64 may start with "-", which a
# spreadsheet reads as a formula.
_ID_PREFIX = "s"


def encode_session_id(key):
    """Return the opaque session ID of a SessionKey (URL-safe base64)."""
    payload = struct.pack(">IH", key.day, key.index) + key.user_id.encode("utf-8")
    encoded = base64.urlsafe_b64encode(_id_check(payload) + payload).decode()
    return _ID_PREFIX + encoded.rstrip("=")


def _id_check(payload):
    return hashlib.blake2b(payload, digest_size=6, key=b"roundtable-sandbox").digest()


_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")


def decode_session_id(session_id):
    """Return the SessionKey a session ID encodes, or None if it is not one."""
    if not session_id.startswith(_ID_PREFIX):
        return None
    encoded = session_id.removeprefix(_ID_PREFIX)
    if not _ID_PATTERN.fullmatch(encoded):
        return None
    raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    check, payload = raw[:6], raw[6:]
    if len(payload) < 6 or check != _id_check(payload):
        return None
    day, index = struct.unpack(">IH", payload[:6])
    try:
        user_id = payload[6:].decode("utf-8")
    except UnicodeDecodeError:
        return None
    key = SessionKey(user_id, day, index)
    # Only the canonical spelling, so each session has exactly one ID.
    return key if encode_session_id(key) == session_id else None


def _find(session_id, now_ms):
    key = decode_session_id(session_id)
    if key is None:
        return None, None
    starts = _day_starts(key.user_id, key.day)
    if key.index >= len(starts) or starts[key.index] > now_ms:
        return None, None
    return key, starts[key.index]


def _recent(user_id, now_ms, tag=None):
    """Yield (start_ms, key) of a user's visible sessions, newest first."""
    oldest_ms = now_ms - _HISTORY_MS
    for day in range(now_ms // _DAY_MS, oldest_ms // _DAY_MS - 1, -1):
        starts = _day_starts(user_id, day)
        for index in range(len(starts) - 1, -1, -1):
            start_ms = starts[index]
            if start_ms > now_ms or start_ms < oldest_ms:
                continue
            key = SessionKey(user_id, day, index)
            if tag is None or tag in _traits(key).tags:
                yield start_ms, key


@lru_cache(maxsize=65536)
def _traits(key):
    profile = user_profile(key.user_id)
    rng = _rng("session", key.user_id, key.day, key.index)
    automated = profile.persona == "bot" or (
        profile.persona == "mixed" and rng.random() < 0.4
    )
    tag_count = rng.choices((1, 2, 3), weights=(60, 35, 5))[0]
    tags = rng.choices(TAGS, weights=_TAG_WEIGHTS[automated], k=tag_count)
    mobile = rng.random() < (0.05 if automated else profile.mobile_share)
    vpn = rng.random() < (0.6 if automated else profile.vpn_share)
    if automated:
        duration_s = rng.uniform(15, 240)
    else:
        duration_s = min(2700, max(30, rng.lognormvariate(math.log(300), 0.8)))
    return _Traits(
        automated=automated,
        tags=tuple(dict.fromkeys(tags)),
        mobile=mobile,
        vpn=vpn,
        score=_draw_score(rng, automated, vpn),
        duration_ms=round(duration_s * 1000),
        action_shift=rng.choices((0, -1, 1), weights=(90, 5, 5))[0],
        action_unknown=rng.random() < 0.02,
    )


def _draw_score(rng, automated, vpn):
    draw = rng.random()
    if automated:
        score = rng.triangular(62, 100, 90) if draw < 0.85 else rng.triangular(40, 75)
    elif draw < 0.8:
        score = rng.triangular(0, 35, 6)
    elif draw < 0.97:
        score = rng.triangular(20, 60, 38)
    else:
        # Rare false positives.
        score = rng.triangular(45, 85, 60)
    if vpn and not automated:
        score += rng.randint(5, 20)
    return min(100, max(0, round(score)))


@lru_cache(maxsize=65536)
def _assessment(key, start_ms):
    """Return the session's (biometric, device, explanation), fixed for life."""
    traits = _traits(key)
    rng = _rng("checks", key.user_id, key.day, key.index)
    biometric, device = checks.draw_checks(
        rng,
        traits.score,
        available=checks.checks_available(start_ms),
        mobile=traits.mobile,
        vpn=traits.vpn,
    )
    explanation = checks.explain(rng, biometric, device)
    return tuple(biometric.items()), tuple(device.items()), explanation


@lru_cache(maxsize=16384)
def _events(key, start_ms):
    """Return all of a session's events as event dicts, including future ones."""
    traits = _traits(key)
    biometric = dict(_assessment(key, start_ms)[0])
    offset = user_profile(key.user_id).utc_offset_minutes
    planned = draw_events(
        _rng("events", key.user_id, key.day, key.index),
        tags=traits.tags,
        start_ms=start_ms,
        duration_ms=traits.duration_ms,
        automated=traits.automated,
        pasted=biometric.get("all_pasted") == checks.DETECTED,
        left_tab=biometric.get("external_input") == checks.DETECTED,
    )
    return tuple(
        {
            "action": action,
            "user_time": format_user_time(timestamp, offset),
            "unix_timestamp": timestamp,
        }
        for timestamp, action in planned
    )


def _visible_events(key, start_ms, now_ms):
    return [
        dict(event)
        for event in _events(key, start_ms)
        if event["unix_timestamp"] <= now_ms
    ]


def _score_at(key, start_ms, now_ms):
    """Return the score at now: redrawn each step while live, then final.

    The spread around the final score narrows as the session ages, so the
    score converges on the value it keeps once the session is complete.
    """
    traits = _traits(key)
    live_until_ms = start_ms + traits.duration_ms + _LIVE_MS
    if now_ms >= live_until_ms:
        return traits.score
    step = (now_ms - start_ms) // _STEP_MS
    progress = step * _STEP_MS / (live_until_ms - start_ms)
    spread = 30 * (1 - progress)
    rng = _rng("live", key.user_id, key.day, key.index, step)
    return min(100, max(0, round(traits.score + rng.uniform(-spread, spread))))


def _session(key, start_ms, now_ms):
    traits = _traits(key)
    biometric, device, explanation = _assessment(key, start_ms)
    score = _score_at(key, start_ms, now_ms)
    session = {
        "session_id": encode_session_id(key),
        "tags": list(traits.tags),
        "risk_score": score,
        "risk_explanation": explanation,
        "recommended_action": checks.recommended_action(
            score, shift=traits.action_shift, unknown=traits.action_unknown
        ),
    }
    if start_ms < _USER_LOGS_REMOVED_MS:
        session["user_logs"] = _visible_events(key, start_ms, now_ms)
    session["biometric_checks"] = dict(biometric)
    session["device_checks"] = dict(device)
    return session


def user_sessions(user_id, now):
    """Return a user's 100 most recent sessions at ``now``, newest first."""
    now_ms = _to_ms(now)
    recent = _recent(user_id, now_ms)
    return [
        _session(key, start_ms, now_ms)
        for start_ms, key in islice(recent, MAX_SESSIONS)
    ]


def tag_sessions(tag, user_ids, now):
    """Return the 100 most recent sessions with a tag across users, newest first."""
    now_ms = _to_ms(now)
    # Each user's sessions come newest first, so a lazy merge reads only as
    # far back as the 100th match.
    merged = heapq.merge(
        *(_recent(user_id, now_ms, tag) for user_id in sorted(user_ids)),
        key=lambda item: item[0],
        reverse=True,
    )
    return [
        _session(key, start_ms, now_ms)
        for start_ms, key in islice(merged, MAX_SESSIONS)
    ]


def session_report(session_id, now):
    """Return the session object plus ``user_id``, or None if not found."""
    now_ms = _to_ms(now)
    key, start_ms = _find(session_id, now_ms)
    if key is None:
        return None
    return {"user_id": key.user_id, **_session(key, start_ms, now_ms)}


def session_events(session_id, now):
    """Return the session's events up to ``now``, or None if not found."""
    now_ms = _to_ms(now)
    key, start_ms = _find(session_id, now_ms)
    if key is None:
        return None
    return _visible_events(key, start_ms, now_ms)


def session_period(session_id):
    """Return (first event, last event) of a session as UTC datetimes.

    Returns None for an ID that does not decode to an existing session. The
    last event may still lie in the future for a live session.
    """
    key = decode_session_id(session_id)
    if key is None:
        return None
    starts = _day_starts(key.user_id, key.day)
    if key.index >= len(starts):
        return None
    start_ms = starts[key.index]
    end_ms = start_ms + _traits(key).duration_ms
    return _to_datetime(start_ms), _to_datetime(end_ms)


def is_live(session_id, now):
    """Return whether a session started and had activity in the last 30 minutes."""
    period = session_period(session_id)
    if period is None:
        return False
    first, last = period
    return first <= now < last + LIVE_TIMEOUT
