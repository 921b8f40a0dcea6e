"""Export stored sessions as CSV."""

import os
import sys

from django.core.management.base import BaseCommand, CommandError

from roundtable_sync.export import write_sessions_csv
from roundtable_sync.models import Session, WatchedUser
from workflow import audit


class Command(BaseCommand):
    help = "Write stored sessions as CSV, one row per session, oldest first."

    def add_arguments(self, parser):
        parser.add_argument("--user", metavar="ID", help="Only this user's sessions.")
        parser.add_argument(
            "--output", metavar="FILE", help="Write to FILE instead of standard output."
        )

    def handle(self, *args, user, output, **options):
        sessions = Session.objects.all()
        if user is not None:
            user = user.strip()
            sessions = sessions.filter(user_id=user)
            watched = WatchedUser.objects.filter(user_id=user).exists()
            if not watched and not sessions.exists():
                raise CommandError(
                    f"No stored sessions for user {user!r}. Check the ID with "
                    "'manage.py watchlist list'.",
                    returncode=2,
                )
        if output is None:
            try:
                count = write_sessions_csv(sessions, self.stdout)
            except BrokenPipeError:
                self._record(user, output, rows=None, completed=False)
                # The reader (such as head) closed the pipe. Point stdout at
                # /dev/null so the flush at exit does not raise again.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return
        else:
            try:
                with open(output, "w", newline="", encoding="utf-8") as stream:
                    count = write_sessions_csv(sessions, stream)
            except OSError as error:
                self._record(user, output, rows=None, completed=False)
                raise CommandError(
                    f"Cannot write {output}: {error.strerror}."
                ) from None
        self._record(user, output, rows=count, completed=True)
        self.stderr.write(f"Exported {count} sessions.")

    def _record(self, user, output, rows, completed):
        # rows is None when the export stopped part-way: the writer does not
        # report how many rows it wrote before the error.
        audit.record(
            audit.COMMAND_LINE,
            "sessions_exported",
            filters={"user": user} if user is not None else {},
            output=output or "standard output",
            rows=rows,
            completed=completed,
        )
