"""Check results, risk explanations and recommended actions for sandbox sessions.

Check results are drawn from the session's final risk score, so a high score
comes with detected bot signals and the explanation names them.
"""

from datetime import UTC, datetime

DETECTED = "Detected"
NOT_DETECTED = "Not detected"
UNKNOWN = "Unknown"

BIOMETRIC_CHECKS = (
    "agent_behavior",
    "programmatic_typing",
    "teleporting_mouse",
    "no_corrections",
    "all_pasted",
    "jump_scrolling",
    "centered_clicks",
    "programmatic_clicking",
    "external_input",
)
DEVICE_CHECKS = (
    "bot",
    "virtual_machine",
    "software_renderer",
    "vpn",
    "tor",
    "location_spoofing",
)

# Roundtable added six checks over six months. The exact dates are not
# published, so these are spread over 2026-03..2026-08. Sessions that start
# before a date lack that key, as older API responses do.
CHECK_INTRODUCED = {
    "jump_scrolling": datetime(2026, 3, 9, tzinfo=UTC),
    "centered_clicks": datetime(2026, 4, 13, tzinfo=UTC),
    "agent_behavior": datetime(2026, 5, 18, tzinfo=UTC),
    "software_renderer": datetime(2026, 6, 22, tzinfo=UTC),
    "programmatic_clicking": datetime(2026, 7, 27, tzinfo=UTC),
    "external_input": datetime(2026, 8, 31, tzinfo=UTC),
}
_INTRODUCED_MS = {
    name: int(when.timestamp() * 1000) for name, when in CHECK_INTRODUCED.items()
}

# Probability that a check is detected in a session with a score of 100.
_WEIGHTS = {
    "agent_behavior": 0.85,
    "programmatic_typing": 0.8,
    "teleporting_mouse": 0.6,
    "no_corrections": 0.7,
    "all_pasted": 0.5,
    "jump_scrolling": 0.5,
    "centered_clicks": 0.55,
    "programmatic_clicking": 0.6,
    "external_input": 0.3,
    "bot": 0.7,
    "virtual_machine": 0.45,
    "software_renderer": 0.45,
    "tor": 0.12,
    "location_spoofing": 0.3,
}
# Probability that a human triggers the check anyway: short forms without
# typos, password managers, and one-time codes pasted from another app.
_HUMAN_NOISE = {"no_corrections": 0.15, "all_pasted": 0.05, "external_input": 0.05}
_UNKNOWN_SHARE = {"all_pasted": 0.1, "location_spoofing": 0.35}
# Network signals that humans trigger too, so they alone never mean automation.
_NETWORK_CHECKS = ("vpn", "tor", "location_spoofing")

_PHRASES = {
    "agent_behavior": "agent-like behavior patterns",
    "programmatic_typing": "programmatic typing",
    "teleporting_mouse": "teleporting mouse movements",
    "no_corrections": "lack of corrections",
    "all_pasted": "all text pasted",
    "jump_scrolling": "jump scrolling",
    "centered_clicks": "perfectly centered clicks",
    "programmatic_clicking": "programmatic clicking",
    "external_input": "input pasted after leaving the tab",
    "bot": "an automation framework such as Selenium or Playwright",
    "virtual_machine": "a virtual machine",
    "software_renderer": "a software graphics renderer",
    "vpn": "a VPN or hosting provider IP address",
    "tor": "a Tor exit node",
    "location_spoofing": "a spoofed location",
}
_CLEAN_EXPLANATIONS = (
    "No bot behaviors detected",
    "Natural typing rhythm and mouse movement with normal corrections",
    "Human-like interaction patterns, no automation signals",
)

RECOMMENDED_ACTIONS = (
    "Auto-accept",
    "Accept with monitoring",
    "Manual review or require additional verification",
    "Auto-reject or high-priority review",
)
UNKNOWN_ACTION = "Unknown"


def checks_available(start_ms):
    """Return the names of the checks that existed when a session started."""
    names = BIOMETRIC_CHECKS + DEVICE_CHECKS
    return {n for n in names if _INTRODUCED_MS.get(n, 0) <= start_ms}


def draw_checks(rng, score, *, available, mobile, vpn):
    """Draw a session's check results as (biometric, device) dicts."""
    results = {}
    strength = min(1.0, max(0.0, (score - 30) / 60))
    for name in BIOMETRIC_CHECKS + DEVICE_CHECKS:
        if name not in available:
            continue
        if _is_unknown(rng, name, mobile):
            results[name] = UNKNOWN
            continue
        if name == "vpn":
            detected = vpn
        else:
            chance = _WEIGHTS[name] * strength + _HUMAN_NOISE.get(name, 0.01)
            detected = rng.random() < chance
        results[name] = DETECTED if detected else NOT_DETECTED

    if score >= 60 and not _automation_signals(results):
        # A high score always has a cause the analyst can see.
        candidates = [
            n
            for n, status in results.items()
            if status == NOT_DETECTED and n not in _NETWORK_CHECKS
        ]
        if candidates:
            results[max(candidates, key=_WEIGHTS.get)] = DETECTED

    biometric = {n: results[n] for n in BIOMETRIC_CHECKS if n in results}
    device = {n: results[n] for n in DEVICE_CHECKS if n in results}
    return biometric, device


def _is_unknown(rng, name, mobile):
    if name == "agent_behavior":
        # The model runs on desktop sessions only.
        return mobile or rng.random() < 0.05
    return rng.random() < _UNKNOWN_SHARE.get(name, 0.03)


def _automation_signals(results):
    return [
        n
        for n, status in results.items()
        if status == DETECTED and n not in _NETWORK_CHECKS
    ]


def explain(rng, biometric, device):
    """Write a short risk explanation naming the detected checks."""
    behaviors = [n for n, s in biometric.items() if s == DETECTED]
    behaviors.sort(key=_WEIGHTS.get, reverse=True)
    environment = [
        n for n, s in device.items() if s == DETECTED and n not in _NETWORK_CHECKS
    ]
    network = [n for n, s in device.items() if s == DETECTED and n in _NETWORK_CHECKS]

    if len(behaviors) >= 2:
        strongest, second = _PHRASES[behaviors[0]], _PHRASES[behaviors[1]]
        text = f"Multiple bot behaviors detected including {strongest} and {second}"
    elif behaviors:
        text = "Bot behavior detected: " + _PHRASES[behaviors[0]]
    elif environment:
        text = "Automated browser environment: " + _PHRASES[environment[0]]
        environment = environment[1:]
    elif network:
        return "Human-like behavior, but the connection comes from " + _join(
            [_PHRASES[n] for n in network]
        )
    else:
        return rng.choice(_CLEAN_EXPLANATIONS)

    if environment or network:
        text += "; also detected: " + _join(
            [_PHRASES[n] for n in environment + network]
        )
    return text


def _join(phrases):
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + " and " + phrases[-1]


def recommended_action(score, *, shift=0, unknown=False):
    """Return the action for a score's band, moved ``shift`` bands.

    Roundtable does not document how it derives the action (four actions
    against three bands), so sessions mostly follow the bands and a few are
    shifted by one band or report ``Unknown``.
    """
    if unknown:
        return UNKNOWN_ACTION
    if score >= 70:
        band = 3
    elif score >= 50:
        band = 2
    elif score >= 30:
        band = 1
    else:
        band = 0
    band = min(max(band + shift, 0), len(RECOMMENDED_ACTIONS) - 1)
    return RECOMMENDED_ACTIONS[band]
