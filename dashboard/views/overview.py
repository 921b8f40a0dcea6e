"""The overview (home page): who is risky right now, why, and where to look."""

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard import charts
from dashboard.filters import filter_value
from dashboard.riskiest import riskiest_users
from roundtable_sync.bands import Band, current_thresholds


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

    # Whole seconds, so the explorer links below select exactly what is counted.
    now = timezone.now().replace(microsecond=0)
    since = time_range.start(now)
    thresholds = current_thresholds()
    with charts.one_snapshot():
        context = figures(since, now, thresholds)
    context.update(
        time_ranges=TIME_RANGES.values(),
        time_range=time_range,
        invalid_range=invalid_range,
        since=since,
        thresholds=thresholds,
        band_labels=charts.band_labels(thresholds),
        count_urls=count_urls(since, now),
        max_series_days=charts.MAX_SERIES_DAYS,
    )
    return render(request, "dashboard/overview.html", context)


def figures(since, now, thresholds):
    """Return the overview's figures for the range, keyed as the template reads them."""
    riskiest = riskiest_users(since, now, thresholds)
    newest_flagged = charts.newest_flagged_sessions(since, now, thresholds)
    pks = charts.watched_user_pks(
        [row["user_id"] for row in riskiest]
        + [session.user_id for session in newest_flagged]
    )
    for row in riskiest:
        row["watched_pk"] = pks.get(row["user_id"])
    for session in newest_flagged:
        session.watched_pk = pks.get(session.user_id)
    return {
        "watched_counts": charts.watched_user_counts(),
        "counts": charts.session_counts(since, now, thresholds),
        "histogram": charts.score_histogram(since, now, thresholds),
        "risk_over_time": charts.risk_over_time(since, now, thresholds),
        "actions": charts.sessions_by_action(since, now),
        "checks": charts.check_rates(since, now),
        "riskiest_users": riskiest,
        "newest_flagged": newest_flagged,
    }


def explorer_url(since, now, **filters):
    """Return the explorer URL for sessions from ``since`` (None: all) to ``now``."""
    params = QueryDict(mutable=True)
    params.update(filters)
    if since is not None:
        params["since"] = filter_value(since)
    params["until"] = filter_value(now)
    return f"{reverse('session_list')}?{params.urlencode()}"


def count_urls(since, now):
    """Return the explorer URL behind each headline count, keyed like the counts."""
    return {
        "in_range": explorer_url(since, now),
        "last_24h": explorer_url(TIME_RANGES["24h"].start(now), now),
        "last_7d": explorer_url(TIME_RANGES["7d"].start(now), now),
        "flagged": explorer_url(since, now, flagged="1"),
        "high_risk": explorer_url(since, now, band=Band.BLOCK.value),
    }
