"""Prepare a demo: a login with a fresh password, and demo users to watch."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from roundtable_sync import watchlist
from roundtable_sync.sandbox.data import DEMO_USER_IDS
from roundtable_sync.sandbox.hostile import HOSTILE_USER_IDS

DEMO_USERNAME = "demo"


class Command(BaseCommand):
    help = (
        "Create or reset the 'demo' login with a new random password and print "
        "it. With --watch-sandbox-users or --watch-hostile-users, also watch "
        "the sandbox's demo or hostile fixture users."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--watch-sandbox-users",
            action="store_true",
            help="Add the sandbox's demo user IDs to the watchlist.",
        )
        parser.add_argument(
            "--watch-hostile-users",
            action="store_true",
            help=(
                "Add the sandbox's hostile fixture users (markup, formulas, "
                "malformed values, URL-special IDs) to the watchlist."
            ),
        )
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/",
            help="The dashboard's address, printed with the login.",
        )

    def handle(self, *args, watch_sandbox_users, watch_hostile_users, url, **options):
        password = secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=DEMO_USERNAME)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        if watch_sandbox_users:
            self._watch(DEMO_USER_IDS, "Sandbox demo user", "demo users")
        if watch_hostile_users:
            self._watch(HOSTILE_USER_IDS, "Sandbox hostile fixture", "hostile users")
        self.stdout.write(
            self.style.SUCCESS(
                f"Open {url} and log in as {DEMO_USERNAME} with password {password}"
            )
        )

    def _watch(self, user_ids, note, label):
        from roundtable_sync.tasks import queue_immediate_poll

        change = watchlist.add_users(user_ids, note=note)
        for watched in watchlist.WatchedUser.objects.filter(user_id__in=change.changed):
            queue_immediate_poll(watched)
        if change.changed:
            self.stdout.write(f"Watching {label}: {', '.join(change.changed)}")
