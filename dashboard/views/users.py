"""The page of one watched user: risk over time, checks, sessions and polling."""

from datetime import UTC, datetime, time

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dashboard.charts import band_labels
from dashboard.check_counts import check_counts
from dashboard.filters import SessionFilterForm
from dashboard.views.sessions import session_table
from roundtable_sync.account import active_pause
from roundtable_sync.bands import current_thresholds
from roundtable_sync.models import (
    CoverageGap,
    PollRecord,
    Session,
    WatchedUser,
)
from roundtable_sync.scoring_changes import scoring_changes_between
from roundtable_sync.tasks import queue_immediate_poll
from roundtable_sync.watchlist import make_due
from workflow import audit
from workflow.permissions import analyst_required

# Newest scored sessions plotted in the risk chart; more points than this
# only slow the browser down.
MAX_CHART_POINTS = 2000


@login_required
@require_GET
def user_detail(request, pk):
    watched = get_object_or_404(WatchedUser.objects.select_related("added_by"), pk=pk)
    sessions = Session.objects.filter(user_id=watched.user_id)
    session_count = sessions.count()
    form = SessionFilterForm(request.GET, user_id=watched.user_id)
    table = session_table(request, form, show_user=False)
    context = {
        "watched": watched,
        "polls": PollRecord.objects.filter(user_id=watched.user_id)[
            : PollRecord.KEEP_PER_USER
        ],
        "coverage_gaps": CoverageGap.objects.filter(user_id=watched.user_id),
        "session_count": session_count,
        "risk_chart": risk_chart(sessions),
        "check_counts": check_counts(watched.user_id, session_count),
        "form": form,
        "table": table,
    }
    return render(request, "dashboard/user_detail.html", context)


def risk_chart(sessions):
    """Return the chart data: one point per scored session, newest MAX_CHART_POINTS.

    Points carry epoch milliseconds and a label already formatted in the
    current time zone, so the browser's own zone plays no part.
    """
    rows = list(
        sessions.filter(risk_score__isnull=False)
        .order_by("-session_time", "-session_id")
        .values_list("session_time", "risk_score")[: MAX_CHART_POINTS + 1]
    )
    capped = len(rows) > MAX_CHART_POINTS
    rows = rows[:MAX_CHART_POINTS]
    thresholds = current_thresholds()
    labels = band_labels(thresholds)
    series = {band.value: [] for band in labels}
    for session_time, score in reversed(rows):
        series[thresholds.band(score).value].append(
            {
                "x": int(session_time.timestamp() * 1000),
                "y": score,
                "label": timezone.localtime(session_time).strftime("%Y-%m-%d %H:%M %Z"),
            }
        )
    return {
        "series": [
            {"band": band.value, "label": label, "points": series[band.value]}
            for band, label in labels.items()
        ],
        "count": len(rows),
        "capped": capped,
        "max_points": MAX_CHART_POINTS,
        "time_zone": timezone.get_current_timezone_name(),
        "scoring_changes": _scoring_change_markers(rows),
    }


def _scoring_change_markers(rows):
    if not rows:
        return []
    zone = timezone.get_current_timezone()
    first = timezone.localdate(rows[-1][0], zone)
    last = timezone.localdate(rows[0][0], zone)
    return [
        {
            "x": int(datetime.combine(change.date, time.min, zone).timestamp() * 1000),
            "description": change.description,
        }
        for change in scoring_changes_between(first, last)
    ]


@login_required
@analyst_required
@require_POST
def user_poll_now(request, pk):
    watched = get_object_or_404(WatchedUser, pk=pk)
    if not watched.is_active:
        messages.error(
            request, f"Polling of {watched.user_id} is paused: resume it to poll it."
        )
        return redirect("user_detail", pk=watched.pk)

    now = timezone.now()
    pause = active_pause(now)
    if pause is not None:
        messages.warning(
            request,
            "Polling is paused account-wide until "
            f"{pause.paused_until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC, "
            "so no poll was queued.",
        )
        result = "account_paused"
    elif make_due(watched, now) and queue_immediate_poll(watched):
        messages.success(request, f"Poll of {watched.user_id} queued.")
        result = "queued"
    else:
        messages.info(
            request, f"A poll of {watched.user_id} is already queued or running."
        )
        result = "already_queued"
    audit.record(request.user, "poll_requested", watched.user_id, result=result)
    return redirect("user_detail", pk=watched.pk)
