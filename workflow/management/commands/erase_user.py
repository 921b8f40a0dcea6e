"""Erase everything stored for one Roundtable user ID, on request."""

from django.core.management.base import BaseCommand, CommandError

from roundtable_sync.watchlist import InvalidUserIdError, clean_user_id
from workflow import audit
from workflow.erasure import erase_user, stored_counts


class Command(BaseCommand):
    help = (
        "Delete all data stored for a Roundtable user ID: sessions with their "
        "history, poll records, coverage gaps, the watchlist entry, and the rows "
        "that receivers of the user_erased signal delete. Works for IDs no "
        "longer watched."
    )

    def add_arguments(self, parser):
        parser.add_argument("user_id", metavar="ID")
        parser.add_argument(
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Erase without asking for confirmation.",
        )

    def handle(self, *args, user_id, interactive, **options):
        try:
            user_id = clean_user_id(user_id)
        except InvalidUserIdError as error:
            raise CommandError(f"{error} Nothing was erased.", returncode=2) from None

        if interactive:
            counts = stored_counts(user_id)
            try:
                answer = input(
                    f"Erase {counts['sessions']} session(s), "
                    f"{counts['poll_records']} poll record(s) and all other data "
                    f"of {user_id!r} for good? Type 'yes' to continue: "
                )
            except EOFError:
                raise CommandError(
                    "No confirmation could be read: standard input is closed. "
                    "Run with --no-input to erase without asking. Nothing was "
                    "erased.",
                    returncode=2,
                ) from None
            if answer != "yes":
                raise CommandError("Erasure cancelled. Nothing was erased.")

        counts = erase_user(user_id, audit.COMMAND_LINE)
        for label, count in counts.items():
            self.stdout.write(f"{label}\t{count}")
        self.stdout.write(f"Erased all data of {user_id}.")
