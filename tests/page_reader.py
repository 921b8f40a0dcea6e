"""Read dashboard pages in a loop from its own process, for the soak test.

Run as ``python -m tests.page_reader SECONDS USERNAME`` with DATABASE_URL
and the other settings in the environment. It signs in USERNAME (which must
exist) and fetches the overview, the sessions explorer, the watchlist, user
pages and the pages of the newest stored sessions until SECONDS have passed
or SIGTERM arrives. It prints one JSON object: requests made and the
failures (URL and status). The exit status is 1 when any failed.
"""

import json
import os
import signal
import sys
import time
from urllib.parse import urlencode

FIXED_PAGES = ["/", "/sessions/", "/watchlist/", "/sessions/?sort=-score"]
USER_PAGES = 20
SESSION_PAGES = 3


def main(seconds, username):
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment

    # Lets the test client's "testserver" host through ALLOWED_HOSTS.
    setup_test_environment()
    # A view's exception becomes a 500 response, recorded as a failure.
    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.get(username=username))
    stop_at = time.monotonic() + seconds
    requests, failures = 0, []
    while not stopping and time.monotonic() < stop_at:
        for url in _pages():
            if stopping or time.monotonic() >= stop_at:
                break
            status = client.get(url).status_code
            requests += 1
            if status != 200:
                failures.append([url, status])
    print(json.dumps({"requests": requests, "failures": failures[:50]}))  # noqa: T201
    return 1 if failures else 0


def _pages():
    """Return the URLs of one round, with the sessions stored so far."""
    from roundtable_sync.models import Session, WatchedUser

    user_pks = WatchedUser.objects.order_by("pk").values_list("pk", flat=True)
    session_ids = Session.objects.order_by("-pk").values_list("session_id", flat=True)
    pages = list(FIXED_PAGES)
    pages += [f"/users/{pk}/" for pk in user_pks[:USER_PAGES]]
    pages += [
        "/sessions/detail/?" + urlencode({"id": session_id})
        for session_id in session_ids[:SESSION_PAGES]
    ]
    return pages


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), sys.argv[2]))
