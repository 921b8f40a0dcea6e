"""The unread alert count shown in the navigation of every page."""

from django.utils.functional import SimpleLazyObject

from alerts.models import Alert


def unread_alerts(request):
    """Add ``unread_alert_count`` for signed-in users, counted only when shown."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {
        "unread_alert_count": SimpleLazyObject(
            lambda: Alert.objects.filter(read_at__isnull=True).count()
        )
    }
