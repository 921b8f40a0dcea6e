"""Event logs for sandbox sessions: what the visitor did, and when."""

import time

# The pages and fields each tagged flow goes through, in order.
FLOWS = {
    "login": (
        "Navigated to /login",
        "Typed in email field",
        "Typed in password field",
        'Clicked "Sign in"',
        "Signed in",
        "Navigated to /dashboard",
    ),
    "signup": (
        "Navigated to /signup",
        "Typed in name field",
        "Typed in email field",
        "Typed in password field",
        'Clicked "Create account"',
        "Navigated to /welcome",
    ),
    "checkout-flow": (
        "Navigated to /cart",
        'Clicked "Checkout"',
        "Navigated to /checkout",
        "Typed in card number field",
        "Typed in expiry date field",
        'Clicked "Pay now"',
        "Navigated to /order-confirmation",
    ),
    "password-reset": (
        "Navigated to /forgot-password",
        "Typed in email field",
        'Clicked "Send reset link"',
        "Navigated to /reset-password",
        "Typed in new password field",
        'Clicked "Update password"',
    ),
    "intake-survey": (
        "Navigated to /survey",
        "Typed in age field",
        'Clicked "Next"',
        "Typed in free-text answer field",
        'Clicked "Submit survey"',
    ),
    "account-settings": (
        "Navigated to /settings",
        'Clicked "Edit profile"',
        "Typed in phone number field",
        'Clicked "Save changes"',
    ),
    "add-payment-method": (
        "Navigated to /billing",
        'Clicked "Update credit card"',
        "Typed in card number field",
        'Clicked "Save card"',
    ),
    "contact-form": (
        "Navigated to /contact",
        "Typed in message field",
        'Clicked "Send"',
    ),
}
TAGS = tuple(FLOWS)

_FILLERS = (
    "Scrolled down",
    "Scrolled up",
    'Clicked "Back"',
    'Hovered over "Help"',
    "Resized the window",
)
_MONTHS = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip


def draw_events(rng, *, tags, start_ms, duration_ms, automated, pasted, left_tab):
    """Draw a session's events as (unix_timestamp_ms, action) pairs.

    The first event is at ``start_ms`` and the last at ``start_ms +
    duration_ms``. ``pasted`` turns typing into pasting, and ``left_tab`` adds
    a visit to another tab before one paste, to match the detected checks.
    """
    actions = []
    for tag in tags:
        actions.extend(FLOWS[tag])
    if pasted or left_tab:
        actions = [_as_paste(a) for a in actions]
    if left_tab:
        first_paste = next(
            (i for i, a in enumerate(actions) if a.startswith("Pasted")), None
        )
        if first_paste is not None:
            actions[first_paste:first_paste] = [
                "Switched to another tab",
                "Returned to the tab",
            ]
    filler_count = rng.randint(0, 2) if automated else rng.randint(0, 8)
    for _ in range(filler_count):
        # Never before the first page load.
        actions.insert(rng.randint(1, len(actions)), rng.choice(_FILLERS))

    if automated:
        # Scripts act at a steady pace.
        gaps = [rng.uniform(0.9, 1.1) for _ in actions[1:]]
    else:
        gaps = [rng.uniform(0.2, 2.0) for _ in actions[1:]]
    total = sum(gaps) or 1.0
    timestamps = [start_ms]
    elapsed = 0.0
    for gap in gaps:
        elapsed += gap
        timestamps.append(start_ms + round(duration_ms * elapsed / total))
    return tuple(zip(timestamps, actions, strict=True))


def _as_paste(action):
    if action.startswith("Typed in "):
        return "Pasted into " + action.removeprefix("Typed in ")
    return action


def format_user_time(timestamp_ms, utc_offset_minutes):
    """Format a timestamp as the visitor's local time, as "Mar 25, 2025 14:30:50".

    The real API sends this string without an offset, so neither does this.
    """
    local = time.gmtime(timestamp_ms // 1000 + utc_offset_minutes * 60)
    month = _MONTHS[local.tm_mon - 1]
    return (
        f"{month} {local.tm_mday}, {local.tm_year} "
        f"{local.tm_hour:02}:{local.tm_min:02}:{local.tm_sec:02}"
    )
