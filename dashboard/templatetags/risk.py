"""Template helpers that show scores with their band, from one definition."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from roundtable_sync.bands import FLAGGED_ACTIONS, current_thresholds

register = template.Library()

NO_SCORE = mark_safe('<span class="risk risk-unknown">No score</span>')
# The key of the thresholds in a template's render_context, which lasts for
# one rendering of one template, so a table of scores reads them once.
_THRESHOLDS_KEY = "risk.thresholds"


@register.filter
def risk_band(score):
    """Return the band value ("allow", "review", "block") or "" without a score."""
    band = current_thresholds().band(score)
    return band.value if band else ""


@register.simple_tag(takes_context=True)
def risk_score(context, score):
    """Render a score with its band as text and colour.

    A simple tag rather than an inclusion tag, because tables render one per
    row, and a sub-template with its own context per row made those tables
    slow to render.
    """
    band = _thresholds(context).band(score)
    if band is None:
        return NO_SCORE
    return format_html(
        '<span class="risk risk-{}">{} ({})</span>',
        band.value,
        score,
        band.label.lower(),
    )


def _thresholds(context):
    thresholds = context.render_context.get(_THRESHOLDS_KEY)
    if thresholds is None:
        thresholds = current_thresholds()
        context.render_context[_THRESHOLDS_KEY] = thresholds
    return thresholds


@register.filter
def is_flagged_action(action):
    return action in FLAGGED_ACTIONS
