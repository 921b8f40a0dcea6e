"""The <time> element that pages show an instant with, in the current time zone."""

from django import template
from django.utils import dateformat
from django.utils.html import format_html
from django.utils.timezone import template_localtime

register = template.Library()


@register.simple_tag(takes_context=True)
def time_element(context, value):
    """Render a datetime as ``<time datetime="ISO 8601">YYYY-MM-DD HH:MM:SS TZ</time>``.

    The output is that of ``value|date:'c'`` and ``value|date:"Y-m-d H:i:s T"``
    in the element, built with one time zone conversion rather than two date
    filters, because tables render one per row. None renders as nothing.
    """
    if value is None:
        return ""
    local = template_localtime(value, context.use_tz)
    # Django's "T" is empty for a time in a repeated or skipped hour, so the
    # zone name comes from its formatter, not from local.tzname().
    zone = dateformat.format(local, "T")
    wall_time = local.replace(tzinfo=None).isoformat(" ", "seconds")
    return format_html(
        '<time datetime="{}">{} {}</time>', local.isoformat(), wall_time, zone
    )
