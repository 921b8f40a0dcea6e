"""Keep API requests under ROUNDTABLE_REQUESTS_PER_SECOND for the whole account.

Every request, from any worker of any cluster, the web server or a command,
first reserves a start time from one database row (RequestSlot). Each
reservation follows the previous one by 1.05 / rate seconds, so ``rate + 1``
reserved starts span at least 1.05 s, however many processes run. No second
then contains more than ``rate`` starts as long as each request starts less
than 50 ms after its reserved time. A process that wakes up more than
LATE_START after its reserved time (a busy machine can delay it that long)
reserves again instead of sending late, which leaves the other 25 ms for the
request to reach the API. The row works the same on SQLite and PostgreSQL,
so the limit needs no server beside the database.

NOTE: start times come from each process's wall clock. Processes on several
machines need clocks synchronised (NTP) to well within 1 / rate seconds, or
the spacing shrinks by their skew.
"""

import logging
import time

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, FloatField, Value
from django.db.models.functions import Greatest

from roundtable_sync.models import RequestSlot

logger = logging.getLogger(__name__)

_SLOT_PK = 1
# Requests are spaced this fraction wider than 1 / rate; see the module text.
JITTER_ALLOWANCE = 0.05
# Seconds past its reserved start after which a request reserves again.
LATE_START = 0.025


class RequestThrottle:
    """Reserves account-wide start times for API requests.

    ``rate`` is requests per second; 0 turns the limit off. ``clock`` returns
    Unix seconds and is injectable for tests.
    """

    def __init__(self, rate, clock=time.time):
        if rate < 0:
            raise ValueError(f"rate is {rate}: it must be 0 (no limit) or more.")
        self.rate = rate
        self._clock = clock
        self._slot = None

    @classmethod
    def from_settings(cls):
        return cls(settings.ROUNDTABLE_REQUESTS_PER_SECOND)

    def __repr__(self):
        return f"<RequestThrottle {self.rate:g}/s>"

    def reserve(self):
        """Reserve the next start time and return the seconds to wait for it."""
        if not self.rate:
            return 0.0
        now = self._clock()
        slot = self._advance(now, (1.0 + JITTER_ALLOWANCE) / self.rate)
        self._slot = slot
        return max(0.0, slot - now)

    def missed(self):
        """Return whether the last reserved start passed over LATE_START ago."""
        if self._slot is None:
            return False
        return self._clock() - self._slot > LATE_START

    def _advance(self, now, spacing):
        # One UPDATE moves the row to max(previous slot + spacing, now). The
        # transaction keeps the row locked (PostgreSQL) or the database
        # locked (SQLite) until this process has read its own slot back.
        rows = RequestSlot.objects.filter(pk=_SLOT_PK)
        for _ in range(2):
            with transaction.atomic():
                updated = rows.update(
                    reserved_until=Greatest(
                        F("reserved_until") + spacing,
                        Value(now, output_field=FloatField()),
                    )
                )
                if updated:
                    return rows.values_list("reserved_until", flat=True).get()
            _create_slot_row()
        raise RuntimeError("The API request slot row could not be created.")


def _create_slot_row():
    # The row is created on first use, so a database flushed by tests works.
    try:
        with transaction.atomic():
            RequestSlot.objects.get_or_create(pk=_SLOT_PK)
    except IntegrityError:
        pass  # Another process created it first.
