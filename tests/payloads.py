"""Builders of API payloads in the documented shapes, for tests."""

import copy

BASE_SESSION = {
    "session_id": "abc123def456",
    "tags": ["intake-survey", "checkout-flow"],
    "risk_score": 75,
    "risk_explanation": "Multiple bot behaviors detected including programmatic "
    "typing and lack of corrections",
    "recommended_action": "Manual review or require additional verification",
    "user_logs": [
        {
            "action": "Navigated to /dashboard",
            "user_time": "Mar 25, 2025 14:30:50",
            "unix_timestamp": 1743055850000,
        }
    ],
    "biometric_checks": {
        "agent_behavior": "Not detected",
        "programmatic_typing": "Detected",
        "teleporting_mouse": "Not detected",
        "no_corrections": "Detected",
        "all_pasted": "Unknown",
        "jump_scrolling": "Detected",
        "centered_clicks": "Detected",
        "programmatic_clicking": "Not detected",
        "external_input": "Not detected",
    },
    "device_checks": {
        "bot": "Detected",
        "virtual_machine": "Not detected",
        "software_renderer": "Not detected",
        "vpn": "Detected",
        "tor": "Not detected",
        "location_spoofing": "Unknown",
    },
}


def session(session_id="abc123def456", **changes):
    """Return a session object like the API's example, with ``changes``."""
    payload = copy.deepcopy(BASE_SESSION)
    payload["session_id"] = session_id
    for key, value in changes.items():
        if value is _DROP:
            payload.pop(key, None)
        else:
            payload[key] = value
    return payload


_DROP = object()
DROP = _DROP


def user_sessions(user_id, sessions):
    return {"user_id": user_id, "sessions": sessions}
