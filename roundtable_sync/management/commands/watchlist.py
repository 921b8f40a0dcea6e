"""Manage the watchlist from the command line: add, remove, list."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from roundtable_sync import watchlist
from roundtable_sync.account import active_pause
from roundtable_sync.models import WatchedUser


class Command(BaseCommand):
    help = "Add, remove or list the Roundtable user IDs the worker polls."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Watch user IDs; polls them at once.")
        add.add_argument("user_ids", nargs="+", metavar="ID")
        add.add_argument("--note", default="", help="A note shown on the watchlist.")
        remove = actions.add_parser(
            "remove", help="Stop watching user IDs; stored sessions are kept."
        )
        remove.add_argument("user_ids", nargs="+", metavar="ID")
        remove.add_argument(
            "--purge",
            action="store_true",
            help="Also delete the users' stored sessions.",
        )
        actions.add_parser("list", help="Print one line per watched user.")

    def handle(self, *args, action, **options):
        if action == "list":
            return self._list()
        try:
            user_ids = watchlist.clean_user_ids(options["user_ids"])
        except watchlist.InvalidUserIdError as error:
            raise CommandError(f"{error} Nothing was changed.", returncode=2) from None
        if action == "add":
            self._add(user_ids, options["note"])
        else:
            self._remove(user_ids, options["purge"])

    def _add(self, user_ids, note):
        from roundtable_sync.tasks import queue_immediate_poll

        change = watchlist.add_users(user_ids, note=note)
        for user_id in change.changed:
            self.stdout.write(f"Added {user_id}")
        for user_id in change.skipped:
            self.stdout.write(f"Skipped {user_id}: already on the watchlist")
        for watched in WatchedUser.objects.filter(user_id__in=change.changed):
            queue_immediate_poll(watched)

    def _remove(self, user_ids, purge):
        change = watchlist.remove_users(user_ids, purge=purge)
        suffix = " and deleted its stored sessions" if purge else ""
        for user_id in change.changed:
            self.stdout.write(f"Removed {user_id}{suffix}")
        for user_id in change.skipped:
            self.stdout.write(f"Skipped {user_id}: not on the watchlist")

    def _list(self):
        pause = active_pause(timezone.now())
        if pause is not None:
            self.stderr.write(
                f"Polling is paused account-wide until "
                f"{pause.paused_until.isoformat()}: {pause.pause_error}"
            )
        for watched in WatchedUser.objects.all():
            state = "active" if watched.is_active else "paused"
            outcome = watched.get_last_poll_outcome_display() or "never polled"
            if watched.last_poll_error:
                outcome += f" ({watched.last_poll_error})"
            self.stdout.write(f"{watched.user_id}\t{state}\t{outcome}")
