"""Template filters of the audit page."""

import json

from django import template

register = template.Library()


@register.filter
def audit_value(value):
    """Return a detail value as text: strings as they are, the rest as JSON.

    The result is plain text, so the template's autoescaping still applies.
    """
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
