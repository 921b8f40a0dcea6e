"""The watchlist page: list, add, import, pause, resume and remove watched users."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard.forms import AddUsersForm, ImportUsersForm, RemoveUserForm
from roundtable_sync.account import active_pause
from roundtable_sync.models import Session, WatchedUser
from roundtable_sync.tasks import queue_immediate_poll
from roundtable_sync.watchlist import add_users, remove_users, set_active
from workflow.permissions import analyst_required

# IDs named in a message after an add or import; a CSV import may add
# thousands, and messages are kept in the session until shown.
MAX_LISTED_IDS = 20
# Polls queued by the request itself after an add. Each costs a few queries,
# so a large import leaves the rest, already due, to the dispatcher's next
# pass (it runs every minute).
MAX_IMMEDIATE_POLLS = 100
WATCHED_USERS_PER_PAGE = 100


def watched_users_with_counts():
    """Return all watched users, each annotated with its stored session count.

    The count is a correlated subquery, so the whole table costs one query
    however many users are watched.
    """
    counts = (
        Session.objects.filter(user_id=OuterRef("user_id"))
        .order_by()
        .values("user_id")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return WatchedUser.objects.select_related("added_by").annotate(
        session_count=Coalesce(Subquery(counts, output_field=IntegerField()), 0)
    )


@login_required
@require_GET
def watchlist(request):
    return _render_watchlist(request)


def _render_watchlist(request, add_form=None, import_form=None):
    query = request.GET.get("q", "").strip()
    watched_users = watched_users_with_counts().order_by("user_id")
    if query:
        watched_users = watched_users.filter(user_id__icontains=query)
    page = Paginator(watched_users, WATCHED_USERS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    context = {
        "watched_users": page.object_list,
        "watched_page": page,
        "query": query,
        "add_form": add_form or AddUsersForm(),
        "import_form": import_form or ImportUsersForm(),
    }
    return render(request, "dashboard/watchlist.html", context)


@login_required
@analyst_required
@require_POST
def watchlist_add(request):
    form = AddUsersForm(request.POST)
    if not form.is_valid():
        return _render_watchlist(request, add_form=form)
    return _add_and_report(request, form.cleaned_data["user_ids"], form)


@login_required
@analyst_required
@require_POST
def watchlist_import(request):
    form = ImportUsersForm(request.POST, request.FILES)
    if not form.is_valid():
        return _render_watchlist(request, import_form=form)
    return _add_and_report(request, form.cleaned_data["csv_file"], form, imported=True)


def _add_and_report(request, user_ids, form, imported=False):
    """Add the cleaned IDs, queue a poll of each new one, and say what happened."""
    change = add_users(
        user_ids,
        added_by=request.user,
        note=form.cleaned_data["note"],
        imported=imported,
    )
    polled_now = change.changed[:MAX_IMMEDIATE_POLLS]
    for watched in WatchedUser.objects.filter(user_id__in=polled_now):
        queue_immediate_poll(watched)

    if change.changed:
        messages.success(
            request,
            f"Added {len(change.changed)} user(s) to the watchlist: "
            f"{_list_ids(change.changed)}.",
        )
        if active_pause(timezone.now()) is not None:
            messages.warning(
                request,
                "Polling is paused account-wide, so the new users are polled "
                "when the pause ends.",
            )
        elif len(change.changed) > len(polled_now):
            messages.info(
                request,
                f"Polls of the first {len(polled_now)} new users were queued now. "
                f"The other {len(change.changed) - len(polled_now):,} are due "
                "and queued at the next dispatch, within a minute.",
            )
    if change.skipped:
        messages.info(
            request,
            f"Already on the watchlist, skipped: {_list_ids(change.skipped)}.",
        )
    return redirect("watchlist")


def _list_ids(user_ids):
    """Join IDs for a message, naming at most MAX_LISTED_IDS of them."""
    listed = ", ".join(user_ids[:MAX_LISTED_IDS])
    more = len(user_ids) - MAX_LISTED_IDS
    return f"{listed} and {more:,} more" if more > 0 else listed


@login_required
@analyst_required
@require_POST
def watchlist_pause(request, pk):
    watched = get_object_or_404(WatchedUser, pk=pk)
    set_active(watched, False, changed_by=request.user)
    messages.success(request, f"Paused polling of {watched.user_id}.")
    return _redirect_back(request)


@login_required
@analyst_required
@require_POST
def watchlist_resume(request, pk):
    watched = get_object_or_404(WatchedUser, pk=pk)
    set_active(watched, True, changed_by=request.user)
    messages.success(
        request,
        f"Resumed polling of {watched.user_id}. It is polled within a minute, "
        "at the next dispatch.",
    )
    return _redirect_back(request)


def _redirect_back(request):
    """Redirect to the form's "next" page on this site, else the watchlist."""
    next_url = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(
        next_url,
        allowed_hosts={request.get_host()},
        require_https=request.is_secure(),
    ):
        return redirect(next_url)
    return redirect("watchlist")


@login_required
@analyst_required
@require_http_methods(["GET", "POST"])
def watchlist_remove(request, pk):
    watched = get_object_or_404(WatchedUser.objects.select_related("added_by"), pk=pk)
    form = RemoveUserForm(request.POST if request.method == "POST" else None)
    if form.is_bound and form.is_valid():
        purge = form.cleaned_data["purge"]
        change = remove_users([watched.user_id], purge=purge, removed_by=request.user)
        if change.changed:
            messages.success(request, _removed_message(watched.user_id, purge))
        else:
            messages.info(
                request, f"{watched.user_id} was already removed from the watchlist."
            )
        return redirect("watchlist")

    context = {
        "watched": watched,
        "form": form,
        "session_count": Session.objects.filter(user_id=watched.user_id).count(),
        "cancel_url": reverse("user_detail", args=[watched.pk]),
    }
    return render(request, "dashboard/watchlist_remove.html", context)


def _removed_message(user_id, purge):
    if purge:
        return f"Removed {user_id} from the watchlist and deleted its stored sessions."
    return f"Removed {user_id} from the watchlist. Its stored sessions are kept."
