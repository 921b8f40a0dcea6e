"""Decision marks for session tables and the decision panel of a page.

``{% load decisions %}``, then ``{% for session in rows|with_decisions %}``
gives each row ``current_decision`` (its newest Decision, or None) in one
query, ``{% decision_mark session.current_decision %}`` shows it, and
``{% decision_panel session=session %}`` or
``{% decision_panel watched=watched %}`` shows the history and, to analysts,
the form.
"""

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from reviews.decisions import current_decisions, session_history, user_history
from reviews.forms import DecisionForm
from workflow.permissions import ACT_PERMISSION

register = template.Library()

UNDECIDED_MARK = mark_safe('<span class="undecided">Undecided</span>')


@register.filter
def with_decisions(sessions):
    """Return ``sessions`` as a list, each with its ``current_decision`` set."""
    rows = list(sessions)
    decisions = current_decisions(row.pk for row in rows)
    for row in rows:
        row.current_decision = decisions.get(row.pk)
    return rows


@register.simple_tag
def decision_mark(decision):
    """Render a current decision as a marker, or "Undecided" for None.

    A simple tag rather than an included template, because tables render
    one per row.
    """
    if not decision:
        return UNDECIDED_MARK
    return format_html(
        '<span class="marker marker-decision decision-{}">{}</span>',
        decision.kind,
        decision.get_kind_display(),
    )


@register.inclusion_tag("reviews/_decision_panel.html", takes_context=True)
def decision_panel(context, session=None, watched=None):
    request = context["request"]
    if session is not None:
        history = session_history(session)
    else:
        history = user_history(watched.user_id)
    return {
        "request": request,
        "csrf_token": context.get("csrf_token"),
        "session": session,
        "watched": watched,
        "history": history,
        "can_decide": request.user.has_perm(ACT_PERMISSION),
        "form": DecisionForm(auto_id="id_decision_%s"),
    }
