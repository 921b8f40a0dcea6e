"""API session payloads drawn from a seeded RNG, shaped like the sandbox's.

Scores, checks, explanations, actions and event logs come from the sandbox's
own drawing functions, so their distributions are the sandbox's: most users
are human with low scores, bots score high with detected checks, and checks
that Roundtable added in 2026 are missing from older sessions. The sandbox
derives each session from hashes of its user and day, which is too slow for a
million sessions; here one ``random.Random`` drives a whole user instead.
"""

import random
from dataclasses import dataclass

from roundtable_sync.sandbox import checks
from roundtable_sync.sandbox import data as sandbox_data
from roundtable_sync.sandbox.events import TAGS, draw_events, format_user_time

_DAY_MS = 86_400_000
_OFFSETS = (-480, -300, -240, 0, 60, 120, 330, 480, 540)


@dataclass(frozen=True)
class User:
    user_id: str
    persona: str  # "human", "bot" or "mixed"
    utc_offset_minutes: int
    mobile_share: float
    vpn_share: float


def draw_user(rng, user_id):
    """Return a user with the sandbox's mix of personas."""
    persona = rng.choices(("human", "bot", "mixed"), weights=(72, 12, 16))[0]
    return User(
        user_id=user_id,
        persona=persona,
        utc_offset_minutes=rng.choice(_OFFSETS),
        mobile_share=rng.uniform(0.05, 0.8),
        vpn_share=0.7 if persona == "bot" else rng.uniform(0.0, 0.4),
    )


def session_counts(rng, users, total):
    """Split ``total`` sessions over ``users``: a long tail, bots the most.

    Most users get a few dozen sessions and some bots several hundred; the
    API's 100-session page limit does not apply to what the dashboard keeps.
    """
    factor = {"human": 1.0, "mixed": 1.5, "bot": 4.0}
    weights = [rng.lognormvariate(0, 1.0) * factor[u.persona] for u in users]
    scale = total / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    # Rounding leaves a few sessions over or under: spread them one each.
    step = 1 if sum(counts) < total else -1
    index = 0
    while sum(counts) != total:
        position = index % len(counts)
        if counts[position] + step >= 1:
            counts[position] += step
        index += 1
    return counts


def session_id(rng):
    """Return an opaque session ID like the API's (24 hex digits)."""
    return f"{rng.getrandbits(96):024x}"


def draw_session(rng, user, start_ms):
    """Return one session payload as the sessions endpoint sends it.

    The second value is the session's full event log as (unix ms, action)
    pairs; the payload carries it as user_logs only before the date when the
    sandbox stops sending that deprecated field.
    """
    automated = user.persona == "bot" or (
        user.persona == "mixed" and rng.random() < 0.4
    )
    tag_count = rng.choices((1, 2, 3), weights=(60, 35, 5))[0]
    tags = rng.choices(TAGS, weights=sandbox_data._TAG_WEIGHTS[automated], k=tag_count)
    tags = list(dict.fromkeys(tags))
    mobile = rng.random() < (0.05 if automated else user.mobile_share)
    vpn = rng.random() < (0.6 if automated else user.vpn_share)
    score = sandbox_data._draw_score(rng, automated, vpn)
    biometric, device = checks.draw_checks(
        rng,
        score,
        available=checks.checks_available(start_ms),
        mobile=mobile,
        vpn=vpn,
    )
    duration_ms = rng.randint(15_000, 240_000 if automated else 900_000)
    events = draw_events(
        rng,
        tags=tags,
        start_ms=start_ms,
        duration_ms=duration_ms,
        automated=automated,
        pasted=biometric.get("all_pasted") == checks.DETECTED,
        left_tab=biometric.get("external_input") == checks.DETECTED,
    )
    payload = {
        "session_id": session_id(rng),
        "tags": tags,
        "risk_score": score,
        "risk_explanation": checks.explain(rng, biometric, device),
        "recommended_action": checks.recommended_action(
            score,
            shift=rng.choices((0, -1, 1), weights=(90, 5, 5))[0],
            unknown=rng.random() < 0.02,
        ),
    }
    if start_ms < sandbox_data._USER_LOGS_REMOVED_MS:
        payload["user_logs"] = [
            {
                "action": action,
                "user_time": format_user_time(at, user.utc_offset_minutes),
                "unix_timestamp": at,
            }
            for at, action in events
        ]
    payload["biometric_checks"] = biometric
    payload["device_checks"] = device
    return payload, events


def start_times(rng, count, end_ms, days):
    """Return ``count`` session start times (ms) in the ``days`` before end_ms."""
    span = days * _DAY_MS
    return sorted(end_ms - rng.randrange(1, span) for _ in range(count))


def seeded(seed, *parts):
    """Return a Random seeded from ``seed`` and ``parts``, stable across runs."""
    return random.Random(f"{seed}:" + ":".join(str(p) for p in parts))
