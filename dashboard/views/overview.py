"""The overview (home page): who is risky right now, why, and where to look."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard import charts
from roundtable_sync.bands import current_thresholds


@dataclass(frozen=True)
class TimeRange:
    key: str
    label: str
    # None for all time.
    length: timedelta | None

    def start(self, now):
        return now - self.length if self.length is not None else None


TIME_RANGES = {
    time_range.key: time_range
    for time_range in (
        TimeRange("24h", "Last 24 hours", timedelta(hours=24)),
        TimeRange("7d", "Last 7 days", timedelta(days=7)),
        TimeRange("30d", "Last 30 days", timedelta(days=30)),
        TimeRange("all", "All time", None),
    )
}
DEFAULT_RANGE = TIME_RANGES["7d"]


@login_required
@require_GET
def overview(request):
    requested = request.GET.get("range")
    time_range = TIME_RANGES.get(requested, DEFAULT_RANGE)
    # Only a value that was sent and not understood gets a notice.
    invalid_range = requested if requested not in (None, *TIME_RANGES) else None

    now = timezone.now()
    since = time_range.start(now)
    thresholds = current_thresholds()
    riskiest = charts.riskiest_users(since, thresholds)
    newest_flagged = charts.newest_flagged_sessions(since, thresholds)
    pks = charts.watched_user_pks(
        [row["user_id"] for row in riskiest]
        + [session.user_id for session in newest_flagged]
    )
    for row in riskiest:
        row["watched_pk"] = pks.get(row["user_id"])
    for session in newest_flagged:
        session.watched_pk = pks.get(session.user_id)

    context = {
        "time_ranges": TIME_RANGES.values(),
        "time_range": time_range,
        "invalid_range": invalid_range,
        "since": since,
        "thresholds": thresholds,
        "band_labels": charts.band_labels(thresholds),
        "watched_counts": charts.watched_user_counts(),
        "counts": charts.session_counts(since, now, thresholds),
        "histogram": charts.score_histogram(since, thresholds),
        "risk_over_time": charts.risk_over_time(since, now, thresholds),
        "actions": charts.sessions_by_action(since),
        "checks": charts.check_rates(since),
        "riskiest_users": riskiest,
        "newest_flagged": newest_flagged,
    }
    return render(request, "dashboard/overview.html", context)
