"""CSV download of the sessions a filtered table shows."""

import logging
from datetime import UTC

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard.filters import SessionFilterForm
from roundtable_sync.export import stream_sessions_csv
from roundtable_sync.models import Session

logger = logging.getLogger(__name__)


@login_required
@require_GET
def session_export(request):
    """Stream the sessions matching the request's filters as CSV, oldest first.

    Invalid filters are rejected rather than skipped, so a download never
    contains more rows than the analyst requested.
    """
    form = SessionFilterForm(request.GET)
    if not form.is_valid():
        message = "\n".join(form.invalid_values())
        logger.info("Session export by %s rejected: %s", request.user, message)
        return HttpResponseBadRequest(
            f"{message}\nFix the filters and export again.\n",
            content_type="text/plain; charset=utf-8",
        )

    sessions = form.filter(Session.objects.all())
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    logger.info("Session export by %s: %s", request.user, form.querystring())
    response = StreamingHttpResponse(
        stream_sessions_csv(sessions), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="sessions-{stamp}.csv"'
    return response
