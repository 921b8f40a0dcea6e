"""Data mirrored from the Roundtable API, and the watchlist that drives it."""

from django.conf import settings
from django.db import models
from django.utils import timezone


class PollOutcome(models.TextChoices):
    SYNCED = "synced", "Synced"
    DEFERRED = "deferred", "Deferred by the API"
    FAILED = "failed", "Failed"


class PolledTarget(models.Model):
    """Base of the watched users and tags that the dispatcher polls.

    It has the fields that claims, poll outcomes and the watchlist pages use.
    """

    note = models.TextField(blank=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when the entry was added from the command line.",
    )
    added_at = models.DateTimeField(default=timezone.now)
    is_active = models.BooleanField(default=True)

    next_poll_at = models.DateTimeField(null=True, blank=True)
    # Set by the dispatcher's conditional UPDATE; only the holder polls.
    claim_token = models.UUIDField(null=True, blank=True)
    # The process running the claimed poll (host:pid:start ticks), written
    # when the poll starts; empty while the poll is only queued.
    claim_holder = models.CharField(max_length=255, blank=True)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_poll_outcome = models.CharField(
        max_length=16, choices=PollOutcome.choices, blank=True
    )
    last_poll_error = models.TextField(blank=True)

    class Meta:
        abstract = True

    @property
    def added_by_label(self):
        return self.added_by.get_username() if self.added_by else "command line"


class WatchedUser(PolledTarget):
    """A Roundtable user ID on the watchlist, with the state of its polling."""

    user_id = models.CharField(max_length=255, unique=True)
    coverage_gap_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Latest poll that found 100 sessions, none stored before.",
    )
    # Identifies the last sessions response stored in full (see
    # roundtable_sync.sync.response_digest), so that a byte-identical
    # response is neither parsed nor stored again. Empty when no response is
    # trusted, e.g. after this user's sessions were changed or deleted by
    # anything but its own poll.
    response_digest = models.CharField(max_length=64, blank=True)
    # That response's session count and warnings, recorded again by polls
    # that skip an identical response.
    response_sessions = models.PositiveIntegerField(default=0)
    response_warnings = models.TextField(blank=True)

    class Meta:
        ordering = ["user_id"]
        indexes = [
            # The dispatcher's scan for active users whose poll is due.
            models.Index(fields=["is_active", "next_poll_at"]),
        ]

    def __str__(self):
        return self.user_id


class PollRecord(models.Model):
    """One poll of one user; the newest few per user are kept for the UI."""

    KEEP_PER_USER = 50

    # The Roundtable user ID, not a foreign key: like stored sessions, poll
    # history outlives the user's place on the watchlist unless purged.
    user_id = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=PollOutcome.choices)
    error = models.TextField(blank=True)
    sessions_received = models.PositiveIntegerField(default=0)
    sessions_new = models.PositiveIntegerField(default=0)
    sessions_changed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # A user's poll history, newest first, and its pruning.
            models.Index(fields=["user_id", "-started_at"]),
        ]

    def __str__(self):
        return f"{self.user_id} at {self.started_at:%Y-%m-%d %H:%M}"


class CoverageGap(models.Model):
    """A poll that may have missed sessions: 100 returned and none stored before.

    The API returns only the newest 100 sessions, so more than 100 new
    sessions between two polls lose the older ones for good.
    """

    user_id = models.CharField(max_length=255, db_index=True)
    detected_at = models.DateTimeField()
    previous_sync_at = models.DateTimeField(null=True)

    class Meta:
        ordering = ["-detected_at"]

    def __str__(self):
        return f"{self.user_id} at {self.detected_at:%Y-%m-%d %H:%M}"


class SessionTimeSource(models.TextChoices):
    USER_LOGS = "user_logs", "Earliest user_logs event"
    EVENTS = "events", "Earliest event from the events endpoint"
    FIRST_SEEN = "first_seen", "First seen by this dashboard (no event times yet)"


class Session(models.Model):
    """A Roundtable session as last received, keyed by the API's session_id."""

    session_id = models.CharField(max_length=255, primary_key=True)
    # The Roundtable user ID, not a foreign key: stored sessions outlive the
    # user's place on the watchlist unless they are purged.
    user_id = models.CharField(max_length=255)
    tags = models.JSONField(default=list)
    risk_score = models.SmallIntegerField(null=True)
    risk_explanation = models.TextField(null=True)
    recommended_action = models.TextField(null=True)
    # {"biometric": {name: status}, "device": {name: status}} as parsed.
    checks = models.JSONField(default=dict)
    raw = models.JSONField()
    # SHA-256 of the canonical raw JSON; an equal digest means nothing changed.
    raw_digest = models.CharField(max_length=64)
    first_seen_at = models.DateTimeField()
    changed_at = models.DateTimeField()
    session_time = models.DateTimeField()
    session_time_source = models.CharField(
        max_length=16, choices=SessionTimeSource.choices
    )
    # True when a check name or status is too long for the SessionCheck
    # table; such checks live only in ``checks``.
    has_unindexed_checks = models.BooleanField(default=False)
    needs_events = models.BooleanField(default=False)
    events_fetched_at = models.DateTimeField(null=True)
    # Failed fetches so far; a session that keeps failing goes to the back of
    # the queue and is given up after MAX_EVENTS_ATTEMPTS.
    events_attempts = models.PositiveSmallIntegerField(default=0)

    MAX_EVENTS_ATTEMPTS = 5

    class Meta:
        indexes = [
            # A user's sessions, newest first (user page, export --user).
            models.Index(fields=["user_id", "-session_time"]),
            # The explorer's keyset pages sorted by time (either direction),
            # the export's order, and every range filter on session time. The
            # score lets a score or band filter skip rows without reading them.
            models.Index(fields=["session_time", "session_id", "risk_score"]),
            # The explorer sorted by score, and score-range filters.
            models.Index(fields=["risk_score", "session_id"]),
            # The explorer sorted by user.
            models.Index(fields=["user_id", "session_id"]),
            # The export's scan for checks missing from the SessionCheck table.
            models.Index(
                fields=["session_id"],
                condition=models.Q(has_unindexed_checks=True),
                name="session_unindexed_checks_idx",
            ),
            # NOTE: recommended_action has no index because the API may send
            # values longer than a PostgreSQL B-tree entry allows.
            # The events task's scan for sessions still missing events.
            models.Index(
                fields=["events_attempts", "first_seen_at"],
                condition=models.Q(needs_events=True),
                name="session_needs_events_idx",
            ),
        ]

    def __str__(self):
        return self.session_id


class CheckGroup(models.TextChoices):
    BIOMETRIC = "biometric", "Biometric"
    DEVICE = "device", "Device"


class SessionCheck(models.Model):
    """One check result of a session, for queries by check name and status."""

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="check_results"
    )
    group = models.CharField(max_length=16, choices=CheckGroup.choices)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=255)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "group", "name"], name="unique_session_check"
            )
        ]
        indexes = [
            # "Sessions where check X reported status Y". The group, second,
            # lets the export find every (group, name) present with two index
            # seeks per name instead of reading each check row.
            models.Index(
                fields=["name", "group", "status"], name="sessioncheck_name_group_idx"
            ),
        ]

    def __str__(self):
        return f"{self.group}.{self.name}: {self.status}"


class TallyBase(models.Model):
    """A count per UTC hour of session time, kept by roundtable_sync.tallies.

    Triggers append +1 and -1 rows, and ``compact`` folds them into one row
    per key. The count of a key is the sum of its rows.
    """

    hour = models.DateTimeField()
    # False for the rows the triggers append, until they are folded.
    compacted = models.BooleanField(default=False)

    class Meta:
        abstract = True
        indexes = [
            models.Index(fields=["hour"], name="%(class)s_hour_idx"),
            # Where compact() finds the hours it has to fold.
            models.Index(
                fields=["hour"],
                condition=models.Q(compacted=False),
                name="%(class)s_unfolded_idx",
            ),
        ]


class SessionTally(TallyBase):
    """Sessions per hour, risk score and recommended action."""

    risk_score = models.SmallIntegerField(null=True)
    recommended_action = models.TextField(null=True)
    sessions = models.IntegerField()

    class Meta:
        indexes = [
            # The daily series sums every hour of its range by score, so it
            # reads this index alone.
            models.Index(
                fields=["hour", "risk_score", "sessions"],
                name="sessiontally_hour_score_idx",
            ),
            models.Index(
                fields=["hour"],
                condition=models.Q(compacted=False),
                name="sessiontally_unfolded_idx",
            ),
        ]

    def __str__(self):
        return f"{self.hour:%Y-%m-%d %H:00} {self.risk_score}: {self.sessions:+d}"


class CheckTally(TallyBase):
    """Check results per hour, check group, name and status."""

    group = models.CharField(max_length=16, choices=CheckGroup.choices)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=255)
    reports = models.IntegerField()

    def __str__(self):
        return f"{self.hour:%Y-%m-%d %H:00} {self.group}.{self.name}: {self.reports:+d}"


class DayTallyBase(models.Model):
    """The folded rows of one UTC day's hourly tallies, summed by key.

    ``compact`` writes them in the transaction that folds the hours, so a
    day's rows always equal the sum of its folded hourly rows.
    """

    day = models.DateTimeField()

    class Meta:
        abstract = True
        indexes = [models.Index(fields=["day"], name="%(class)s_day_idx")]


class SessionDayTally(DayTallyBase):
    """Sessions per day, risk score and recommended action."""

    risk_score = models.SmallIntegerField(null=True)
    recommended_action = models.TextField(null=True)
    sessions = models.IntegerField()

    def __str__(self):
        return f"{self.day:%Y-%m-%d} {self.risk_score}: {self.sessions}"


class CheckDayTally(DayTallyBase):
    """Check results per day, check group, name and status."""

    group = models.CharField(max_length=16, choices=CheckGroup.choices)
    name = models.CharField(max_length=255)
    status = models.CharField(max_length=255)
    reports = models.IntegerField()

    def __str__(self):
        return f"{self.day:%Y-%m-%d} {self.group}.{self.name}: {self.reports}"


class UserRiskBase(models.Model):
    """A user's sessions summed up, kept by roundtable_sync.user_risk.

    ``flagged`` counts the sessions flagged at ``UserRiskState.review``.
    """

    user_id = models.CharField(max_length=255)
    max_risk_score = models.SmallIntegerField(null=True)
    sessions = models.IntegerField()
    flagged = models.IntegerField()
    latest_session_time = models.DateTimeField()

    class Meta:
        abstract = True

    def __str__(self):
        return f"{self.user_id}: max {self.max_risk_score}, {self.flagged} flagged"


class UserRisk(UserRiskBase):
    """A user's sessions of all time."""

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user_id"], name="user_risk_unique_user"),
        ]


class UserRiskDay(UserRiskBase):
    """A user's sessions of one UTC day, which starts at ``day``."""

    day = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user_id", "day"], name="user_risk_day_unique_user_day"
            ),
        ]
        indexes = [models.Index(fields=["day"], name="user_risk_day_day_idx")]


class UserRiskChange(models.Model):
    """A user whose sessions changed since the summaries were last refreshed.

    Triggers append one row per session written, so a user may appear many
    times until the refresh removes them.
    """

    user_id = models.CharField(max_length=255)

    class Meta:
        indexes = [models.Index(fields=["user_id"], name="user_risk_change_user_idx")]

    def __str__(self):
        return self.user_id


class UserRiskState(models.Model):
    """The review threshold the summaries' flagged counts were made with.

    A single row, missing until the first count.
    """

    review = models.SmallIntegerField()
    counted_at = models.DateTimeField()

    def __str__(self):
        return f"counted at review {self.review}"


class ScoreChange(models.Model):
    """A change of a session's score or recommended action between polls."""

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="score_changes"
    )
    observed_at = models.DateTimeField()
    old_score = models.SmallIntegerField(null=True)
    new_score = models.SmallIntegerField(null=True)
    old_action = models.TextField(null=True)
    new_action = models.TextField(null=True)

    class Meta:
        ordering = ["observed_at", "id"]

    def __str__(self):
        return f"{self.session_id}: {self.old_score} -> {self.new_score}"


class SessionEvent(models.Model):
    """One event of a session, from user_logs or the events endpoint."""

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="events"
    )
    position = models.PositiveIntegerField()
    action = models.TextField(null=True)
    user_time = models.TextField(null=True)
    unix_timestamp = models.BigIntegerField(null=True)
    timestamp = models.DateTimeField(null=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "position"], name="unique_session_event"
            )
        ]

    def __str__(self):
        return f"{self.session_id} #{self.position}"


class PauseReason(models.TextChoices):
    KEY_REJECTED = "key_rejected", "API key rejected"
    RATE_LIMITED = "rate_limited", "Rate limited"


class AccountState(models.Model):
    """Account-wide polling state: one row, pk 1.

    A rejected key or a long rate limit affects every user, so it is recorded
    once here and pauses all polling instead of failing each user.
    """

    paused_until = models.DateTimeField(null=True)
    pause_reason = models.CharField(
        max_length=16, choices=PauseReason.choices, blank=True
    )
    pause_error = models.TextField(blank=True)
    # HMAC of the rejected key under SECRET_KEY, never the key itself: a
    # changed key resumes polling without waiting for the pause to end.
    rejected_key_fingerprint = models.CharField(max_length=64, blank=True)
    heartbeat_at = models.DateTimeField(null=True)
    # Lease that lets one events task at a time spend the events budget.
    events_lease_until = models.DateTimeField(null=True)

    def __str__(self):
        return "Account state"

    @classmethod
    def load(cls):
        state, _ = cls.objects.get_or_create(pk=1)
        return state


class RequestSlot(models.Model):
    """The start time of the newest API request reserved account-wide: one row.

    roundtable_sync.throttle moves it forward by one request's share of
    ROUNDTABLE_REQUESTS_PER_SECOND for every request, from every process.
    """

    # Unix seconds, a float because slots are a fraction of a second apart.
    reserved_until = models.FloatField(default=0.0)

    def __str__(self):
        return "API request slot"


class ThresholdSetting(models.Model):
    """Score thresholds adopted in the UI; the newest row is in force.

    Without any row, ROUNDTABLE_REVIEW_THRESHOLD and
    ROUNDTABLE_BLOCK_THRESHOLD apply.
    """

    review = models.PositiveSmallIntegerField()
    block = models.PositiveSmallIntegerField()
    adopted_at = models.DateTimeField()
    adopted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        get_latest_by = ["adopted_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(review__gte=1)
                & models.Q(block__lte=100)
                & models.Q(review__lt=models.F("block")),
                name="thresholds_ordered_within_range",
            )
        ]

    def __str__(self):
        return f"review from {self.review}, block from {self.block}"


class WatchedTag(PolledTarget):
    """A Roundtable tag whose sessions are polled, across all users."""

    tag = models.CharField(max_length=255, unique=True)

    class Meta:
        ordering = ["tag"]
        indexes = [
            # The dispatcher's scan for active tags whose poll is due.
            models.Index(fields=["is_active", "next_poll_at"]),
        ]

    def __str__(self):
        return self.tag


class PendingTagSession(models.Model):
    """A session seen by a tag poll whose user is not known yet.

    Tag responses carry no user ID, and a stored Session needs one, so the
    session waits here until its report names the user.
    """

    session_id = models.CharField(max_length=255, primary_key=True)
    # The tag whose poll found the session first. Removing that tag drops the
    # lookup, and pausing it delays the lookup until the tag is resumed.
    watched_tag = models.ForeignKey(
        WatchedTag, on_delete=models.CASCADE, related_name="pending_sessions"
    )
    first_seen_at = models.DateTimeField()
    # Failed report lookups so far; a session that keeps failing goes to the
    # back of the queue and is dropped after MAX_ATTEMPTS.
    attempts = models.PositiveSmallIntegerField(default=0)

    MAX_ATTEMPTS = 5

    class Meta:
        indexes = [
            # The lookup task's queue: fewest failures first, then oldest.
            models.Index(fields=["attempts", "first_seen_at"]),
        ]

    def __str__(self):
        return self.session_id


class ForgottenSession(models.Model):
    """A session deleted on purpose, so that polling does not store it again.

    Retention and erasure delete sessions the API may still list among a
    user's or tag's newest 100. A poll skips these IDs instead of storing
    them as new.
    """

    session_id = models.CharField(max_length=255, primary_key=True)
    forgotten_at = models.DateTimeField()
    # "retention" or "erasure"; the user ID is not kept.
    reason = models.CharField(max_length=16)

    def __str__(self):
        return f"{self.session_id} ({self.reason})"
