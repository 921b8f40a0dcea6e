"""Hostile fixture users: fixed payloads that attack parsing, storage and pages.

The sandbox serves these reserved user IDs from the payloads below instead of
generated data. They carry markup and script in every text field and
spreadsheet formula prefixes in every exported field. They also have very
long and right-to-left text, IDs with URL-special characters, scores and
enums outside the contract, missing and null objects, repeated sessions, NUL
characters and lone surrogates. One session has 20,000 events, and one user's
body is over the size cap. Each payload is a pure function of ``now``, so
sessions stay in the overview's ranges however long the sandbox runs.
"""

from datetime import timedelta

MARKUP_USER = "hostile-markup"
FORMULA_USER = "=hostile-formulas"
VALUES_USER = "hostile-values"
URL_USER = "hostile/../?a=1&b#frag%2e% ."
DOT_USER = "."
DOT_DOT_USER = ".."
EVENTS_USER = "hostile-events"
OVERSIZED_USER = "hostile-oversized"

# Watch these to see every hostile case in the demo.
HOSTILE_USER_IDS = [
    MARKUP_USER,
    FORMULA_USER,
    VALUES_USER,
    URL_USER,
    DOT_USER,
    DOT_DOT_USER,
    EVENTS_USER,
    OVERSIZED_USER,
]

# Every payload element carries this attribute, so a test can parse a page and
# look for it: an element or attribute with it means the markup was not escaped.
MARKER = "data-hostile"
MARKUP = (
    f"<script {MARKER}>alert(1)</script>"
    f"<img {MARKER} src=x onerror=alert(2)>"
    f"\"'><svg {MARKER} onload=alert(3)>"
    f"</textarea></title></script><b {MARKER}>bold</b>"
    "{{ 7|add:7 }}{% now 'Y' %}${7*7}"
)
# Cells a spreadsheet would run, and the variants that hide the prefix
# behind whitespace.
FORMULAS = [
    '=HYPERLINK("http://127.0.0.1/x","click")',
    "+1+1",
    "-1+1",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
    " =1+1",
    "\n=1+1",
    "=cmd|' /C calc'!A0",
]
RTL_TEXT = "\u202eexe.txt \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627"
NON_ASCII = "Zoë 🤖 東京 e\u0301 \u200d\ufeff"
LONG_TEXT = "long " * 20_000  # 100,000 characters
# Session IDs longer than this are not stored.
LONG_ID = "x" * 300
LARGE_EVENT_COUNT = 20_000
# One MiB over the default ROUNDTABLE_MAX_RESPONSE_MB of 50.
OVERSIZED_BYTES = 51 * 1024 * 1024
NUL_TEXT = "before\x00after"
SURROGATE_TEXT = "lone \ud800 surrogate"


def _millis(moment):
    return int(moment.timestamp() * 1000)


def _logs(start, actions):
    return [
        {
            "action": action,
            "user_time": start.strftime("%Y-%m-%d %H:%M:%S"),
            "unix_timestamp": _millis(start) + index * 1000,
        }
        for index, action in enumerate(actions)
    ]


def _session(session_id, start, **fields):
    session = {
        "session_id": session_id,
        "tags": ["login"],
        "risk_score": 75,
        "risk_explanation": "Hostile fixture",
        "recommended_action": "Manual review",
        "user_logs": _logs(start, ["Navigated to /login"]),
        "biometric_checks": {"programmatic_typing": "Detected"},
        "device_checks": {"bot": "Not detected"},
    }
    session.update(fields)
    return session


def _markup_sessions(now):
    start = now - timedelta(hours=2)
    checks = {MARKUP: MARKUP, "programmatic_typing": MARKUP}
    return [
        _session(
            f"<i {MARKER}>markup</i>-1",
            start,
            tags=[MARKUP, f"</script><u {MARKER}>", RTL_TEXT],
            risk_score=95,
            risk_explanation=MARKUP,
            recommended_action=MARKUP,
            user_logs=_logs(start, [MARKUP, f"Typed <b {MARKER}>x</b>"]),
            biometric_checks=checks,
            device_checks={**checks, "bot": "Detected"},
        ),
        _session(
            f"markup-2{MARKUP}",
            start - timedelta(hours=1),
            tags=[NON_ASCII, RTL_TEXT, "login"],
            risk_score=55,
            risk_explanation=f"{RTL_TEXT} {NON_ASCII} {MARKUP}",
            recommended_action="Auto-reject",
        ),
        _session(
            "markup-long",
            start - timedelta(hours=3),
            tags=[LONG_TEXT[:10_000]],
            risk_explanation=LONG_TEXT + MARKUP,
            recommended_action=LONG_TEXT,
            biometric_checks={"y" * 300: "Detected", "programmatic_typing": "Z" * 300},
            device_checks={"bot": LONG_TEXT},
            user_logs=_logs(start, [LONG_TEXT, MARKUP]),
        ),
        _session(LONG_ID, start - timedelta(hours=4)),
        # Without user_logs, so the timeline comes from the events endpoint.
        _session(
            f"markup-events{MARKUP}",
            start - timedelta(hours=5),
            user_logs=None,
        ),
    ]


def _formula_sessions(now):
    sessions = []
    for index, formula in enumerate(FORMULAS):
        start = now - timedelta(hours=1, minutes=index)
        sessions.append(
            _session(
                f"{formula}#{index}",
                start,
                tags=[formula, "login"],
                risk_explanation=formula,
                recommended_action=formula,
                biometric_checks={formula: formula, "programmatic_typing": formula},
                device_checks={"bot": formula},
                user_logs=_logs(start, [formula]),
            )
        )
    return sessions


def _value_sessions(now):
    start = now - timedelta(hours=6)
    scores = ["85", 50.5, 101, 1e9, -1, True, None]
    sessions = [
        _session(f"score-{index}", start - timedelta(minutes=index), risk_score=score)
        for index, score in enumerate(scores)
    ]
    missing_score = _session("score-missing", start - timedelta(minutes=10))
    del missing_score["risk_score"]
    sessions += [
        missing_score,
        _session(
            "unknown-enums",
            start,
            recommended_action="Quarantine",
            biometric_checks={"programmatic_typing": "Maybe", "new_check": "Unknown"},
            device_checks={"bot": "DETECTED"},
        ),
        _session(
            "null-objects",
            start,
            tags=None,
            risk_explanation=None,
            recommended_action=None,
            biometric_checks=None,
            device_checks=None,
            user_logs=None,
        ),
        _session(
            "wrong-types",
            start,
            tags="login",
            risk_explanation=42,
            recommended_action=["Auto-accept"],
            biometric_checks=["programmatic_typing"],
            device_checks={"bot": None, "vpn": 1},
            user_logs={"action": "click"},
        ),
        {"session_id": "only-an-id"},
        None,
        "a session as a string",
        {"session_id": None, "risk_score": 90},
        {"session_id": "", "risk_score": 90},
        # Repeated: the last copy wins.
        _session("duplicate", start, risk_score=10),
        _session("duplicate", start, risk_score=90),
        _session(
            "nul-text\x00",
            start,
            tags=[NUL_TEXT],
            risk_explanation=NUL_TEXT,
            recommended_action=NUL_TEXT,
            biometric_checks={NUL_TEXT: NUL_TEXT},
            user_logs=_logs(start, [NUL_TEXT]),
        ),
        _session(
            "surrogate-text",
            start,
            tags=[SURROGATE_TEXT],
            risk_explanation=SURROGATE_TEXT,
            biometric_checks={SURROGATE_TEXT: "Detected"},
            user_logs=_logs(start, [SURROGATE_TEXT]),
        ),
        _session(
            "bad-events",
            start,
            user_logs=[
                None,
                {"action": 5, "unix_timestamp": "yesterday"},
                {"action": "far future", "unix_timestamp": 10**20},
                {"action": "fraction", "unix_timestamp": 1.5},
            ],
        ),
    ]
    return sessions


def _url_sessions(now):
    start = now - timedelta(hours=3)
    ids = [".", "..", "a/b", "../../admin", "?x=1&y=2#frag", "%2e%2e", "%", " . "]
    return [
        _session(session_id, start - timedelta(minutes=index), user_logs=None)
        for index, session_id in enumerate(ids)
    ]


def _dot_sessions(now):
    return [_session("dot-user-session", now - timedelta(hours=1))]


def _dot_dot_sessions(now):
    return [_session("dot-dot-user-session", now - timedelta(hours=1))]


def _events_sessions(now):
    return [
        _session(
            "hostile-events-20000",
            now - timedelta(hours=1),
            user_logs=None,
            risk_score=88,
        )
    ]


_SESSIONS = {
    MARKUP_USER: _markup_sessions,
    FORMULA_USER: _formula_sessions,
    VALUES_USER: _value_sessions,
    URL_USER: _url_sessions,
    DOT_USER: _dot_sessions,
    DOT_DOT_USER: _dot_dot_sessions,
    EVENTS_USER: _events_sessions,
}


def is_hostile(user_id):
    return user_id in HOSTILE_USER_IDS


def user_sessions(user_id, now):
    """Return the sessions list payload of a hostile user.

    The oversized user has no payload here: the server streams its body.
    """
    return {"user_id": user_id, "sessions": _SESSIONS[user_id](now)}


def _find(session_id, now):
    for user_id, build in _SESSIONS.items():
        for session in build(now):
            if isinstance(session, dict) and session.get("session_id") == session_id:
                return user_id, session
    return None, None


def session_report(session_id, now):
    """Return a hostile session with its user_id, or None if not hostile."""
    user_id, session = _find(session_id, now)
    if session is None:
        return None
    return {"user_id": user_id, **session}


def session_events(session_id, now):
    """Return the events of a hostile session, or None if not hostile."""
    _, session = _find(session_id, now)
    if session is None:
        return None
    if session_id == "hostile-events-20000":
        return _many_events(now - timedelta(hours=1))
    if session.get("user_logs") is not None:
        return session["user_logs"]
    return _logs(now - timedelta(hours=5), [MARKUP, NUL_TEXT, f"{FORMULAS[0]}"])


def _many_events(start):
    actions = ["Clicked", "Typed in email field", MARKUP, "Navigated to /x"]
    return [
        {
            "action": f"{actions[index % len(actions)]} #{index}",
            "user_time": start.strftime("%Y-%m-%d %H:%M:%S"),
            "unix_timestamp": _millis(start) + index * 10,
        }
        for index in range(LARGE_EVENT_COUNT)
    ]
