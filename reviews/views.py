"""Review decisions, the review queue and threshold calibration."""

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Exists, OuterRef, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from dashboard.views.session_detail import check_rows
from reviews import calibration
from reviews.decisions import record_decision
from reviews.forms import DecisionForm, QueueDecisionForm, ThresholdsForm
from reviews.models import Decision
from roundtable_sync.bands import current_thresholds, forget_thresholds
from roundtable_sync.models import Session, ThresholdSetting, WatchedUser
from workflow import audit
from workflow.permissions import analyst_required

# Remaining queue items counted exactly; beyond this the page shows "N+".
MAX_QUEUE_COUNT = 1000
# Adoptions listed on the calibration page, newest first.
MAX_ADOPTIONS = 50


def _session_url(session_id):
    return f"{reverse('session_detail')}?{urlencode({'id': session_id})}"


def _form_errors(form):
    messages = []
    for name, errors in form.errors.items():
        label = form.fields[name].label if name in form.fields else name
        messages.append(f"{label}: {' '.join(errors)}")
    return " ".join(messages)


@login_required
@analyst_required
@require_POST
def decide_session(request):
    session = get_object_or_404(Session, session_id=request.POST.get("session", ""))
    form = DecisionForm(request.POST)
    if form.is_valid():
        decision = record_decision(
            request.user,
            form.cleaned_data["kind"],
            form.cleaned_data["note"],
            session=session,
        )
        messages.success(request, f"Recorded: {decision.get_kind_display()}.")
    else:
        messages.error(request, f"No decision recorded. {_form_errors(form)}")
    return redirect(_session_url(session.session_id) + "#decisions-heading")


@login_required
@analyst_required
@require_POST
def decide_user(request, pk):
    watched = get_object_or_404(WatchedUser, pk=pk)
    form = DecisionForm(request.POST)
    if form.is_valid():
        decision = record_decision(
            request.user,
            form.cleaned_data["kind"],
            form.cleaned_data["note"],
            user_id=watched.user_id,
        )
        messages.success(request, f"Recorded: {decision.get_kind_display()}.")
    else:
        messages.error(request, f"No decision recorded. {_form_errors(form)}")
    return redirect(reverse("user_detail", args=[watched.pk]) + "#decisions-heading")


def undecided_flagged_sessions():
    """Return the review queue: flagged sessions without any decision, oldest first."""
    decided = Decision.objects.filter(session=OuterRef("pk"))
    return (
        Session.objects.filter(current_thresholds().flagged_q())
        .filter(~Exists(decided))
        .order_by("session_time", "session_id")
    )


def _after(queue, session_id):
    """Return ``queue`` narrowed to the sessions after ``session_id`` in its order.

    An unknown ID (deleted meanwhile) leaves the queue whole.
    """
    position = (
        Session.objects.filter(session_id=session_id)
        .values_list("session_time", flat=True)
        .first()
    )
    if position is None:
        return queue
    return queue.filter(
        Q(session_time__gt=position)
        | Q(session_time=position, session_id__gt=session_id)
    )


@login_required
@require_GET
def queue(request):
    after = request.GET.get("after", "")
    remaining = undecided_flagged_sessions()
    candidates = _after(remaining, after) if after else remaining
    session = candidates.first()
    count = remaining.values("pk")[: MAX_QUEUE_COUNT + 1].count()
    context = {
        "session": session,
        "after": after,
        "remaining": min(count, MAX_QUEUE_COUNT),
        "remaining_capped": count > MAX_QUEUE_COUNT,
        "thresholds": current_thresholds(),
    }
    if session is not None:
        reported, _ = check_rows(session.checks)
        context.update(
            form=QueueDecisionForm(initial={"session": session.session_id}),
            detected_checks=[row for row in reported if row.status == "Detected"],
            watched_pk=WatchedUser.objects.filter(user_id=session.user_id)
            .values_list("pk", flat=True)
            .first(),
            skip_url=_queue_url(session.session_id),
            session_url=_session_url(session.session_id),
        )
    return render(request, "reviews/queue.html", context)


@login_required
@analyst_required
@require_POST
def queue_decide(request):
    form = QueueDecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"No decision recorded. {_form_errors(form)}")
        return redirect(_queue_url(request.POST.get("after", "")))

    session_id = form.cleaned_data["session"]
    session = get_object_or_404(Session, session_id=session_id)
    decision = record_decision(
        request.user,
        form.cleaned_data["kind"],
        form.cleaned_data["note"],
        session=session,
    )
    messages.success(
        request, f"Recorded {decision.get_kind_display()} on session {session_id}."
    )
    # Continue after the decided session, so sessions skipped before it stay
    # skipped until the end of the queue.
    return redirect(_queue_url(session_id))


def _queue_url(after):
    url = reverse("reviews:queue")
    return f"{url}?{urlencode({'after': after})}" if after else url


@login_required
@require_GET
def calibration_page(request):
    current = current_thresholds()
    if request.GET:
        form = ThresholdsForm(request.GET)
    else:
        form = ThresholdsForm(
            initial={"review": current.review, "block": current.block}
        )
    context = {
        "form": form,
        "current": current,
        "adoptions": ThresholdSetting.objects.select_related("adopted_by").order_by(
            "-adopted_at", "-id"
        )[:MAX_ADOPTIONS],
        "action_agreement": calibration.action_agreement(),
    }
    if form.is_bound and form.is_valid():
        candidate = type(current)(
            form.cleaned_data["review"], form.cleaned_data["block"]
        )
    else:
        candidate = current
    context["candidate"] = candidate
    context["comparison"] = calibration.compare(current, candidate)
    return render(request, "reviews/calibration.html", context)


@login_required
@analyst_required
@require_POST
def adopt_thresholds(request):
    form = ThresholdsForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Thresholds not adopted. {_form_errors(form)}")
        return redirect("reviews:calibration")

    old = current_thresholds()
    review, block = form.cleaned_data["review"], form.cleaned_data["block"]
    if (review, block) == (old.review, old.block):
        messages.info(
            request, f"Review {review} and block {block} are already in force."
        )
        return redirect("reviews:calibration")

    ThresholdSetting.objects.create(
        review=review, block=block, adopted_at=timezone.now(), adopted_by=request.user
    )
    forget_thresholds()
    audit.record(
        request.user,
        "thresholds_adopted",
        f"review {review}, block {block}",
        old={"review": old.review, "block": old.block},
        new={"review": review, "block": block},
    )
    messages.success(
        request, f"Adopted: review from {review}, block from {block}, on every page."
    )
    return redirect("reviews:calibration")
