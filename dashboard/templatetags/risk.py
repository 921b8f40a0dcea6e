"""Template helpers that show scores with their band, from one definition."""

from django import template

from roundtable_sync.bands import FLAGGED_ACTIONS, current_thresholds

register = template.Library()


@register.filter
def risk_band(score):
    """Return the band value ("allow", "review", "block") or "" without a score."""
    band = current_thresholds().band(score)
    return band.value if band else ""


@register.inclusion_tag("dashboard/_risk_score.html")
def risk_score(score):
    """Render a score with its band as text and colour."""
    band = current_thresholds().band(score)
    return {"score": score, "band": band}


@register.filter
def is_flagged_action(action):
    return action in FLAGGED_ACTIONS
