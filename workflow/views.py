"""The audit page and the erasure of one user's data."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from workflow.erasure import erase_user as erase_user_data
from workflow.erasure import stored_counts
from workflow.forms import AuditFilterForm, EraseUserForm
from workflow.models import AuditEvent
from workflow.permissions import analyst_required

EVENTS_PER_PAGE = 100


# Any signed-in user may read the trail. It contains who did what, user IDs
# and counts but never session data, and viewers are among the staff whose
# accountability it serves.
@login_required
@require_GET
def audit_list(request):
    """List audit events newest first, a keyset page at a time.

    ``before`` is the ID of the last event on the previous page, so a page
    costs two indexed queries (that event's time, then the page) however long
    the trail is.
    """
    form = AuditFilterForm(request.GET)
    events, next_before = [], None
    if form.is_valid():
        events = list(_page(form))
        if len(events) > EVENTS_PER_PAGE:
            events = events[:EVENTS_PER_PAGE]
            next_before = events[-1].pk
    context = {
        "form": form,
        "events": events,
        "older_query": next_before and _query_with(request, before=next_before),
        "newest_query": _query_with(request, before=None),
        "is_first_page": not (form.is_valid() and form.cleaned_data["before"]),
    }
    return render(request, "workflow/audit_list.html", context)


def _page(form):
    events = form.filter(AuditEvent.objects.all())
    before = form.cleaned_data["before"]
    if before:
        last = AuditEvent.objects.filter(pk=before).values("occurred_at").first()
        if last is None:
            return AuditEvent.objects.none()
        events = events.filter(
            Q(occurred_at__lt=last["occurred_at"])
            | Q(occurred_at=last["occurred_at"], pk__lt=before)
        )
    return events.order_by("-occurred_at", "-pk")[: EVENTS_PER_PAGE + 1]


def _query_with(request, before):
    query = request.GET.copy()
    query.pop("before", None)
    if before is not None:
        query["before"] = before
    return query.urlencode()


@login_required
@analyst_required
@require_http_methods(["GET", "POST"])
def erase_user(request):
    """Confirm, then delete everything stored for the Roundtable user ID."""
    form = EraseUserForm(request.POST if request.method == "POST" else request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest(
            "Missing or invalid user ID: open this page from a user's page.\n",
            content_type="text/plain; charset=utf-8",
        )
    user_id = form.cleaned_data["user"]
    if request.method == "POST":
        counts = erase_user_data(user_id, request.user)
        messages.success(
            request,
            f"Erased all data of {user_id}: {counts['sessions']} session(s), "
            f"{counts['poll_records']} poll record(s), "
            f"{counts['coverage_gaps']} coverage gap(s).",
        )
        return redirect("watchlist")

    context = {"user_id": user_id, "counts": stored_counts(user_id), "form": form}
    return render(request, "workflow/erase_user.html", context)
