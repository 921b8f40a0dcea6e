"""The page of one watched user: polling state, poll history and sessions."""

from datetime import UTC

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from roundtable_sync.account import active_pause
from roundtable_sync.models import CoverageGap, PollRecord, Session, WatchedUser
from roundtable_sync.tasks import queue_immediate_poll
from roundtable_sync.watchlist import make_due

SESSIONS_PER_PAGE = 50

# Only the columns the sessions table shows, because the raw payload is large.
SESSION_TABLE_FIELDS = [
    "session_id",
    "session_time",
    "session_time_source",
    "risk_score",
    "recommended_action",
    "tags",
]


@login_required
@require_GET
def user_detail(request, pk):
    watched = get_object_or_404(WatchedUser.objects.select_related("added_by"), pk=pk)
    sessions = (
        Session.objects.filter(user_id=watched.user_id)
        .only(*SESSION_TABLE_FIELDS)
        .order_by("-session_time", "session_id")
    )
    page = Paginator(sessions, SESSIONS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "watched": watched,
        "polls": watched.polls.all()[: PollRecord.KEEP_PER_USER],
        "coverage_gaps": CoverageGap.objects.filter(user_id=watched.user_id),
        "sessions_page": page,
    }
    return render(request, "dashboard/user_detail.html", context)


@login_required
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
    elif make_due(watched, now) and queue_immediate_poll(watched):
        messages.success(request, f"Poll of {watched.user_id} queued.")
    else:
        messages.info(
            request, f"A poll of {watched.user_id} is already queued or running."
        )
    return redirect("user_detail", pk=watched.pk)
