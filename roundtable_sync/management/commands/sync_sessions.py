"""Poll watched users once, synchronously: the cron-friendly worker."""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from roundtable_sync import account
from roundtable_sync.client import RoundtableClient
from roundtable_sync.dispatch import claim_now, mark_running
from roundtable_sync.models import PauseReason, PollOutcome, WatchedUser
from roundtable_sync.sync import sync_user
from roundtable_sync.watchlist import InvalidUserIdError, clean_user_ids


class Command(BaseCommand):
    help = (
        "Poll every active watched user once, or only the named ones, and print "
        "one line per user. Exit status 0 when all synced or were deferred by "
        "the API, 1 when any failed or the API key was rejected, 2 for an "
        "invalid or unwatched ID."
    )

    def add_arguments(self, parser):
        parser.add_argument("user_ids", nargs="*", metavar="ID")

    def handle(self, *args, user_ids, **options):
        users = self._select(user_ids)
        try:
            client = RoundtableClient.from_settings()
        except ImproperlyConfigured as error:
            raise CommandError(str(error), returncode=1) from None
        failed, deferred = [], []
        with client:
            for watched in users:
                outcome = self._sync_one(watched, client)
                if outcome == PollOutcome.FAILED:
                    failed.append(watched.user_id)
                elif outcome == PollOutcome.DEFERRED:
                    deferred.append(watched.user_id)
        if deferred:
            self.stdout.write(f"Deferred by the API: {', '.join(deferred)}")
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(users)} users failed: {', '.join(failed)}",
                returncode=1,
            )

    def _sync_one(self, watched, client):
        now = timezone.now()
        pause = account.active_pause(now)
        if pause is not None:
            self.stdout.write(
                f"{watched.user_id}: not polled: polling is paused until "
                f"{pause.paused_until.isoformat()}: {pause.pause_error}"
            )
            return PollOutcome.FAILED if _key_rejected() else PollOutcome.DEFERRED
        token, claimed = claim_now([watched.pk], now)
        # Recording this process as the holder keeps a second sync_sessions
        # from taking the claim over while this poll runs.
        if not claimed or not mark_running(watched.pk, token):
            self.stdout.write(
                f"{watched.user_id}: deferred: a poll of this user is already running"
            )
            return PollOutcome.DEFERRED
        result = sync_user(watched, client)
        self.stdout.write(result.summary())
        if result.account_wide and _key_rejected():
            return PollOutcome.FAILED
        return result.outcome

    def _select(self, user_ids):
        if not user_ids:
            return list(WatchedUser.objects.filter(is_active=True))
        try:
            cleaned = clean_user_ids(user_ids)
        except InvalidUserIdError as error:
            raise CommandError(str(error), returncode=2) from None
        users = {w.user_id: w for w in WatchedUser.objects.filter(user_id__in=cleaned)}
        missing = [user_id for user_id in cleaned if user_id not in users]
        if missing:
            raise CommandError(
                f"Not on the watchlist: {', '.join(missing)}. Add them with "
                "'manage.py watchlist add' first. No user was polled.",
                returncode=2,
            )
        return [users[user_id] for user_id in cleaned]


def _key_rejected():
    """Return whether polling is paused for a rejected key.

    A rejected key needs a person to fix it, so it counts as a failure; a
    rate limit only needs time, so it counts as deferred.
    """
    pause = account.active_pause(timezone.now())
    return pause is not None and pause.pause_reason == PauseReason.KEY_REJECTED
