"""Signals other apps connect to, so one erasure reaches all their data."""

from django.dispatch import Signal

# Sent by workflow.erasure.erase_user with ``user_id`` (the Roundtable user
# ID, a str), inside the transaction that deletes the user's sessions, poll
# history, coverage gaps and watchlist row.
#
# Contract for receivers:
# - Delete every row your app stores for ``user_id`` (rows keyed by the ID
#   itself; rows that cascade from a deleted Session are gone already).
# - Return a dict {label: number of rows deleted}, such as {"alerts": 3}, or
#   None. The counts are added to the erasure's audit event, so never return
#   the deleted data itself.
# - Do not catch your own errors: the signal is sent with send(), so an
#   exception rolls back the whole erasure and the caller reports it, rather
#   than leaving part of the user's data behind.
user_erased = Signal()

# Sent by workflow.tasks.apply_retention with ``cutoff`` (an aware datetime),
# after it deleted the sessions, poll history and coverage gaps older than
# that. Receivers delete their own rows older than ``cutoff`` and return
# {label: number of rows deleted} or None, as for user_erased.
retention_applied = Signal()
