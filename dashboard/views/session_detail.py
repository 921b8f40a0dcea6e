"""The session page: one stored session with its checks, history and events."""

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET

from roundtable_sync.bands import current_thresholds
from roundtable_sync.checks import DOCUMENTED_CHECKS, ordered_check_keys
from roundtable_sync.models import CheckGroup, Session, WatchedUser

# A session may carry tens of thousands of events, so the timeline is paged.
EVENTS_PER_PAGE = 200
# Newest score changes shown; a session rescored at every poll for months
# would otherwise list thousands.
MAX_SCORE_CHANGES = 200

STATUS_CLASSES = {
    "Detected": "detected",
    "Not detected": "not-detected",
    "Unknown": "unknown",
}


@dataclass(frozen=True)
class CheckRow:
    group: str
    name: str
    status: object
    # Empty for a check Roundtable does not document.
    description: str

    @property
    def group_label(self):
        return CheckGroup(self.group).label if self.group in CheckGroup else self.group

    @property
    def status_class(self):
        return STATUS_CLASSES.get(self.status, "other")


@login_required
@require_GET
def session_detail(request):
    session_id = request.GET.get("id", "")
    session = Session.objects.filter(session_id=session_id).first()
    if session is None:
        return _not_found(request, session_id)

    thresholds = current_thresholds()
    reported, not_reported = check_rows(session.checks)
    score_changes = list(
        session.score_changes.order_by("-observed_at", "-id")[: MAX_SCORE_CHANGES + 1]
    )
    events = Paginator(session.events.all(), EVENTS_PER_PAGE)
    context = {
        "session": session,
        "flagged": thresholds.is_flagged(
            session.risk_score, session.recommended_action
        ),
        "high_risk": thresholds.is_high_risk(session.risk_score),
        "watched_pk": WatchedUser.objects.filter(user_id=session.user_id)
        .values_list("pk", flat=True)
        .first(),
        "tag_links": tag_links(session.tags),
        "reported_checks": reported,
        "not_reported_checks": not_reported,
        "score_changes": score_changes[:MAX_SCORE_CHANGES],
        "score_changes_capped": len(score_changes) > MAX_SCORE_CHANGES,
        "max_score_changes": MAX_SCORE_CHANGES,
        "events_page": events.get_page(request.GET.get("events_page")),
        "raw_json": json.dumps(session.raw, indent=2, ensure_ascii=False),
    }
    return render(request, "dashboard/session_detail.html", context)


def _not_found(request, session_id):
    context = {"session": None, "requested_id": session_id}
    return render(request, "dashboard/session_detail.html", context, status=404)


def check_rows(checks):
    """Split a session's checks into reported rows and documented ones it lacks.

    Reported rows list documented checks in Roundtable's order, then checks it
    does not document. Older sessions predate checks added since, so a
    documented check can be missing from a session.
    """
    statuses = {
        (group, name): status
        for group, by_name in checks.items()
        if isinstance(by_name, dict)
        for name, status in by_name.items()
    }
    reported = [
        CheckRow(group, name, statuses[group, name], _description(group, name))
        for group, name in ordered_check_keys(statuses)
    ]
    not_reported = [
        CheckRow(group, name, None, description)
        for group, by_name in DOCUMENTED_CHECKS.items()
        for name, description in by_name.items()
        if (group, name) not in statuses
    ]
    return reported, not_reported


def _description(group, name):
    return DOCUMENTED_CHECKS.get(group, {}).get(name, "")


def tag_links(tags):
    """Pair each tag with the explorer URL filtered by exactly that tag."""
    explorer = reverse("session_list")
    return [(tag, f"{explorer}?{urlencode({'tag': tag})}") for tag in tags or []]
