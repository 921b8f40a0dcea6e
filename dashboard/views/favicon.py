"""/favicon.ico, which browsers request on pages that link no icon."""

from django.http import HttpResponseRedirect
from django.templatetags.static import static
from django.views.decorators.http import require_GET


@require_GET
def favicon(request):
    # A temporary redirect, because the target's name carries a content hash
    # that changes with the icon.
    return HttpResponseRedirect(static("favicon.svg"))
