"""Create a dashboard account in the analysts or viewers group."""

import secrets
import sys

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from workflow import audit
from workflow.permissions import ANALYSTS_GROUP, VIEWERS_GROUP

ROLE_GROUPS = {"analyst": ANALYSTS_GROUP, "viewer": VIEWERS_GROUP}


class Command(BaseCommand):
    help = (
        "Create a dashboard account with a role, or move an existing account "
        "to that role. Analysts act and export; viewers only read."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--role",
            required=True,
            help="analyst (acts on sessions and exports) or viewer (reads only).",
        )
        parser.add_argument("--email", default="", help="The account's e-mail address.")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password from the first line of standard input "
            "instead of generating one.",
        )

    def handle(self, *args, username, role, email, password_stdin, **options):
        if role not in ROLE_GROUPS:
            raise CommandError(
                f"Unknown role {role!r}: use analyst or viewer.", returncode=2
            )
        User = get_user_model()
        try:
            username = User.normalize_username(username)
            User._meta.get_field(User.USERNAME_FIELD).run_validators(username)
        except ValidationError as error:
            raise CommandError(
                f"Invalid username {username!r}: {' '.join(error.messages)}",
                returncode=2,
            ) from None

        user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
        if user is not None:
            self._move(user, role)
            return
        password = self._password(password_stdin)
        with transaction.atomic():
            user = User.objects.create_user(username, email=email, password=password)
            self._set_role(user, role)
            audit.record(audit.COMMAND_LINE, "account_created", username, role=role)
        self.stdout.write(f"Created {role} {username}.")
        if not password_stdin:
            self.stdout.write(f"Password (shown only once): {password}")

    def _password(self, from_stdin):
        if not from_stdin:
            return secrets.token_urlsafe(18)
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError(
                "No password on standard input: pipe one line, or leave out "
                "--password-stdin to generate one.",
                returncode=2,
            )
        try:
            password_validation.validate_password(password)
        except ValidationError as error:
            raise CommandError(
                f"Password rejected: {' '.join(error.messages)}", returncode=2
            ) from None
        return password

    def _move(self, user, role):
        with transaction.atomic():
            self._set_role(user, role)
            audit.record(
                audit.COMMAND_LINE,
                "account_role_changed",
                user.get_username(),
                role=role,
            )
        self.stdout.write(
            f"{user.get_username()} already exists: moved to the {role} role. "
            "Its password and e-mail address are unchanged."
        )

    def _set_role(self, user, role):
        # A user is in exactly one role group, so moving out of the other one
        # also removes what it granted.
        user.groups.remove(*Group.objects.filter(name__in=ROLE_GROUPS.values()))
        user.groups.add(Group.objects.get(name=ROLE_GROUPS[role]))
