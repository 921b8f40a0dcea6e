"""Signals the sync engine sends, so other apps react without coupling.

Receivers run inside the poll task, after the data is committed. They must
not raise: sync_user logs and swallows a receiver's error so one faulty
receiver never fails a poll.
"""

from django.dispatch import Signal

# Sent after a successful poll stored its sessions. Arguments:
# watched_user (WatchedUser), stored (store.StoreResult with new_session_ids
# and score_changes), first_sync (True when the user had never synced: a
# backfill of history, not news), now (aware datetime of the poll).
sessions_stored = Signal()

# Sent after every poll is recorded on the user, whatever its outcome.
# Arguments: watched_user (WatchedUser, as before the poll), result
# (sync.PollResult), now (aware datetime when the poll finished).
poll_recorded = Signal()
