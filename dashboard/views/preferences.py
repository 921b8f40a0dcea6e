"""The preferences page, where an analyst picks the time zone of every page."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from dashboard.forms import PreferencesForm
from dashboard.models import AnalystPreference


@login_required
@require_http_methods(["GET", "POST"])
def preferences(request):
    saved = (
        AnalystPreference.objects.filter(user=request.user)
        .values_list("time_zone", flat=True)
        .first()
    )
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            return _save(request, form.cleaned_data["time_zone"])
    else:
        form = PreferencesForm(initial={"time_zone": saved or ""})

    context = {
        "form": form,
        "now": timezone.now(),
        "default_time_zone": settings.DASHBOARD_TIME_ZONE,
    }
    return render(request, "dashboard/preferences.html", context)


def _save(request, time_zone):
    # update_or_create, so two saves at once cannot both try to insert the row.
    AnalystPreference.objects.update_or_create(
        user=request.user, defaults={"time_zone": time_zone}
    )
    shown = time_zone or f"the dashboard default, {settings.DASHBOARD_TIME_ZONE}"
    messages.success(request, f"Times are now shown in {shown}.")
    return redirect("preferences")
