"""Account-wide polling controls."""

import logging

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from roundtable_sync.account import end_pause_early
from workflow import audit
from workflow.permissions import analyst_required

logger = logging.getLogger(__name__)


@login_required
@analyst_required
@require_POST
def polling_resume(request):
    """End an account-wide pause now, for example after the vendor fixed a key."""
    end_pause_early(timezone.now())
    audit.record(request.user, "polling_resumed")
    logger.info("Account-wide pause ended early by %s", request.user.get_username())
    messages.success(
        request,
        "Polling resumes at the next dispatch, within a minute. If the API "
        "still rejects the key or rate limits, polling pauses again.",
    )
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = "/"
    return redirect(next_url)
