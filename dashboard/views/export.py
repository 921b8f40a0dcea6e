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
from workflow import audit
from workflow.permissions import export_required

logger = logging.getLogger(__name__)


@login_required
@export_required
@require_GET
def session_export(request):
    """Stream the sessions matching the request's filters as CSV, oldest first.

    Invalid filters are rejected rather than skipped, so a download never
    contains more rows than the analyst requested. The export is audited when
    the stream ends, with the filters and the number of rows sent.
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
    lines = audited_stream(
        stream_sessions_csv(sessions), request.user, _filters(request)
    )
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="sessions-{stamp}.csv"'
    return response


def _filters(request):
    """Return the query parameters as {name: value, or list when repeated}."""
    return {
        name: values[0] if len(values) == 1 else values
        for name, values in request.GET.lists()
    }


def audited_stream(batches, user, filters):
    """Yield the CSV text a batch of lines at a time, then audit the export.

    A download cut short (the client disconnects, so the server closes the
    generator with GeneratorExit, or a query fails) is recorded with
    ``completed`` false. ``rows`` counts data rows handed to the server,
    which may not all have reached the client.
    """
    rows = -1  # The first line is the header.
    completed = False
    try:
        for lines in batches:
            rows += len(lines)
            yield "".join(lines)
        completed = True
    finally:
        # Ends the export's read transaction first, so the record commits.
        batches.close()
        audit.record(
            user,
            "sessions_exported",
            filters=filters,
            rows=max(rows, 0),
            completed=completed,
        )
