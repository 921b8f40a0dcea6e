"""Sliding session expiry: a session ends after SESSION_COOKIE_AGE idle seconds.

Django's SESSION_SAVE_EVERY_REQUEST would write the session row on every
request. This middleware renews at most once a minute instead, so it writes
at most once a minute per active analyst.
"""

from django.utils import timezone

# Session key holding when the session's expiry was last pushed forward, in
# Unix seconds.
RENEWED_AT_KEY = "idle_expiry_renewed_at"
# NOTE: because renewals are this far apart, a session can end up to this
# many seconds before SESSION_COOKIE_AGE has passed since the last request.
RENEW_INTERVAL_SECONDS = 60


def _now_seconds():
    return int(timezone.now().timestamp())


def stamp_session_at_login(sender, request, user, **kwargs):
    """Record the login as the first renewal (a user_logged_in receiver).

    Login already saves the session with a full expiry, so the next requests
    need no write until the renewal interval has passed.
    """
    if request is not None and hasattr(request, "session"):
        request.session[RENEWED_AT_KEY] = _now_seconds()


class SlidingSessionExpiryMiddleware:
    """Push a signed-in session's expiry SESSION_COOKIE_AGE ahead of now.

    Sits below SessionMiddleware, which saves a modified session, with the
    new expiry in the row and the cookie, after this middleware returns.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return response
        now = _now_seconds()
        renewed_at = request.session.get(RENEWED_AT_KEY, 0)
        if now - renewed_at >= RENEW_INTERVAL_SECONDS:
            # Setting a key marks the session modified, so it is saved.
            request.session[RENEWED_AT_KEY] = now
        return response
