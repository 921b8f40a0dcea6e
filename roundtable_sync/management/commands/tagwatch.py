"""Manage watched tags from the command line: add, remove, list."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from roundtable_sync import tags
from roundtable_sync.account import active_pause
from roundtable_sync.models import WatchedTag
from workflow import audit


class Command(BaseCommand):
    help = "Add, remove or list the Roundtable tags whose sessions the worker polls."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="Watch tags; polls them at once.")
        add.add_argument("tags", nargs="+", metavar="TAG")
        add.add_argument("--note", default="", help="A note shown with the tags.")
        remove = actions.add_parser(
            "remove", help="Stop watching tags; stored sessions are kept."
        )
        remove.add_argument("tags", nargs="+", metavar="TAG")
        actions.add_parser("list", help="Print one line per watched tag.")

    def handle(self, *args, action, **options):
        if action == "list":
            return self._list()
        try:
            cleaned = tags.clean_tags(options["tags"])
        except tags.InvalidTagError as error:
            raise CommandError(f"{error} Nothing was changed.", returncode=2) from None
        if action == "add":
            self._add(cleaned, options["note"])
        else:
            self._remove(cleaned)

    def _add(self, cleaned, note):
        from roundtable_sync.tasks import queue_immediate_tag_poll

        change = tags.add_tags(cleaned, note=note)
        for tag in change.changed:
            audit.record(audit.COMMAND_LINE, "tag_added", tag, note=note)
            self.stdout.write(f"Added {tag}")
        for tag in change.skipped:
            self.stdout.write(f"Skipped {tag}: already watched")
        for watched in WatchedTag.objects.filter(tag__in=change.changed):
            queue_immediate_tag_poll(watched)

    def _remove(self, cleaned):
        change = tags.remove_tags(cleaned)
        for tag in change.changed:
            audit.record(audit.COMMAND_LINE, "tag_removed", tag)
            self.stdout.write(f"Removed {tag}")
        for tag in change.skipped:
            self.stdout.write(f"Skipped {tag}: not watched")

    def _list(self):
        pause = active_pause(timezone.now())
        if pause is not None:
            self.stderr.write(
                f"Polling is paused account-wide until "
                f"{pause.paused_until.isoformat()}: {pause.pause_error}"
            )
        for watched in WatchedTag.objects.all():
            state = "active" if watched.is_active else "paused"
            outcome = watched.get_last_poll_outcome_display() or "never polled"
            if watched.last_poll_error:
                outcome += f" ({watched.last_poll_error})"
            self.stdout.write(f"{watched.tag}\t{state}\t{outcome}")
