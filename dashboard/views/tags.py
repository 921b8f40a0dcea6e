"""The watched-tags page: list, add, pause, resume and remove watched tags."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from roundtable_sync import tags
from roundtable_sync.account import active_pause
from roundtable_sync.models import WatchedTag
from roundtable_sync.tasks import queue_immediate_tag_poll
from workflow import audit
from workflow.permissions import analyst_required


class AddTagsForm(forms.Form):
    tags = forms.CharField(
        label="Tags",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=(
            "Roundtable tags, one per line, exactly as the pages set them. "
            "Leading and trailing whitespace is trimmed and blank lines are "
            "ignored. If any tag is invalid, none is added."
        ),
    )
    note = forms.CharField(
        label="Note",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional, stored with every tag added here.",
    )

    def clean_tags(self):
        # Split on "\n" only: str.splitlines() would also split inside a tag
        # on characters such as U+2028.
        lines = self.cleaned_data["tags"].split("\n")
        try:
            return tags.clean_tags(line for line in lines if line.strip())
        except tags.InvalidTagError as error:
            raise forms.ValidationError(str(error)) from None


@login_required
@require_GET
def tag_list(request):
    return _render_tags(request, AddTagsForm())


def _render_tags(request, add_form):
    watched_tags = WatchedTag.objects.select_related("added_by").annotate(
        pending_count=Count("pending_sessions")
    )
    context = {"watched_tags": watched_tags, "add_form": add_form}
    return render(request, "dashboard/tags.html", context)


@login_required
@analyst_required
@require_POST
def tag_add(request):
    form = AddTagsForm(request.POST)
    if not form.is_valid():
        return _render_tags(request, form)
    note = form.cleaned_data["note"]
    change = tags.add_tags(form.cleaned_data["tags"], added_by=request.user, note=note)
    for tag in change.changed:
        audit.record(request.user, "tag_added", tag, note=note)
    for watched in WatchedTag.objects.filter(tag__in=change.changed):
        queue_immediate_tag_poll(watched)

    if change.changed:
        messages.success(request, f"Watching tag(s): {', '.join(change.changed)}.")
        if active_pause(timezone.now()) is not None:
            messages.warning(
                request,
                "Polling is paused account-wide, so the new tags are polled "
                "when the pause ends.",
            )
    if change.skipped:
        messages.info(
            request, f"Already watched, skipped: {', '.join(change.skipped)}."
        )
    return redirect("tag_list")


@login_required
@analyst_required
@require_POST
def tag_pause(request, pk):
    watched = get_object_or_404(WatchedTag, pk=pk)
    tags.set_active(watched, False, changed_by=request.user)
    audit.record(request.user, "tag_paused", watched.tag)
    messages.success(request, f"Paused polling of tag {watched.tag}.")
    return redirect("tag_list")


@login_required
@analyst_required
@require_POST
def tag_resume(request, pk):
    watched = get_object_or_404(WatchedTag, pk=pk)
    tags.set_active(watched, True, changed_by=request.user)
    audit.record(request.user, "tag_resumed", watched.tag)
    messages.success(
        request,
        f"Resumed polling of tag {watched.tag}. It is polled within a minute, "
        "at the next dispatch.",
    )
    return redirect("tag_list")


@login_required
@analyst_required
@require_POST
def tag_remove(request, pk):
    watched = get_object_or_404(WatchedTag, pk=pk)
    change = tags.remove_tags([watched.tag], removed_by=request.user)
    if change.changed:
        audit.record(request.user, "tag_removed", watched.tag)
        messages.success(
            request,
            f"Stopped watching tag {watched.tag}. Its stored sessions are kept.",
        )
    return redirect("tag_list")
