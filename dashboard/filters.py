"""Session filters from GET parameters, shared by the explorer, user page and export."""

from datetime import UTC, date, datetime, time, timedelta

from django import forms
from django.db import NotSupportedError, connection
from django.db.models import Exists, F, Lookup, OuterRef, Q, Subquery
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from reviews.models import Decision, DecisionKind, newest_session_decision
from roundtable_sync.bands import FLAGGED_ACTIONS, Band, current_thresholds
from roundtable_sync.checks import DOCUMENTED_CHECKS
from roundtable_sync.models import SessionCheck
from roundtable_sync.search import SearchCandidates, can_prefilter

DOCUMENTED_ACTIONS = (
    "Auto-accept",
    "Accept with monitoring",
    *FLAGGED_ACTIONS,
    "Unknown",
)
DOCUMENTED_STATUSES = ("Detected", "Not detected", "Unknown")
# Decision filter values beside the decision kinds.
UNDECIDED = "undecided"
DECIDED = "decided"


class HasTag(Lookup):
    """True when a JSON array of strings has an element equal to the value.

    SQLite has no JSON containment operator, so it tests the elements with
    json_each. PostgreSQL uses jsonb containment (@>), which a GIN index on
    the column can serve.
    """

    lookup_name = "has_tag"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        raise NotSupportedError(
            f"Tag filters support SQLite and PostgreSQL, not {connection.vendor}."
        )

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        sql = (
            f"EXISTS (SELECT 1 FROM json_each({lhs}) AS tag "
            f"WHERE tag.type = 'text' AND tag.value = {rhs})"
        )
        return sql, (*lhs_params, *rhs_params)

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} @> jsonb_build_array({rhs}::text)", (*lhs_params, *rhs_params)


class HasTagContaining(HasTag):
    """True when an element of a JSON array of strings contains the value,
    ignoring case as Django's icontains does on each database."""

    lookup_name = "has_tag_containing"

    def get_db_prep_lookup(self, value, connection):
        return "%s", [f"%{connection.ops.prep_for_like_query(value)}%"]

    def as_sqlite(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        sql = (
            f"EXISTS (SELECT 1 FROM json_each({lhs}) AS tag "
            f"WHERE tag.type = 'text' AND tag.value LIKE {rhs} ESCAPE '\\')"
        )
        return sql, (*lhs_params, *rhs_params)

    def as_postgresql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        sql = (
            f"EXISTS (SELECT 1 FROM jsonb_array_elements_text({lhs}) AS tag(value) "
            f"WHERE UPPER(tag.value) LIKE UPPER({rhs}))"
        )
        return sql, (*lhs_params, *rhs_params)


def search_q(text):
    """Return the exact condition of a free-text search for ``text``.

    It matches part of a session ID, user ID, explanation or tag, ignoring case.
    """
    return (
        Q(session_id__icontains=text)
        | Q(user_id__icontains=text)
        | Q(risk_explanation__icontains=text)
        | Q(HasTagContaining(F("tags"), text))
    )


class DayOrTimeField(forms.CharField):
    """A whole day (YYYY-MM-DD) or an instant (YYYY-MM-DDTHH:MM[:SS]).

    Cleans to a ``date`` or to an aware ``datetime``. A time without a UTC
    offset is in the current time zone, and an offset such as +01:00 picks
    one of the two instants of a repeated hour when clocks go back.
    """

    default_error_messages = {
        "invalid": "Enter a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM)."
    }

    def to_python(self, value):
        value = super().to_python(value)
        if not value:
            return None
        try:
            if "T" not in value and " " not in value:
                return date.fromisoformat(value)
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise forms.ValidationError(
                self.error_messages["invalid"], code="invalid"
            ) from None
        if timezone.is_naive(parsed):
            return timezone.make_aware(parsed)
        return parsed


def range_start(value):
    """Return the first instant a ``since`` value (date or datetime) admits."""
    if isinstance(value, datetime):
        return value
    return datetime.combine(value, time.min, tzinfo=timezone.get_current_timezone())


def range_end_q(value):
    """Return the filter for an ``until`` value: a whole day, or up to an instant."""
    if isinstance(value, datetime):
        return Q(session_time__lte=value)
    return Q(session_time__lt=range_start(value + timedelta(days=1)))


def _is_empty_range(since, until):
    start = range_start(since)
    if isinstance(until, datetime):
        return start > until
    return start >= range_start(until + timedelta(days=1))


def filter_value(moment):
    """Return ``moment`` as a ``since``/``until`` value in the current time zone.

    Whole seconds only, so pass an instant without microseconds. The UTC
    offset is written only when the local time alone would be ambiguous.
    """
    local = timezone.localtime(moment)
    plain = local.replace(tzinfo=None, fold=0)
    # Compared in UTC, because aware datetimes of one zone compare by wall
    # time and would miss the second instant of a repeated hour.
    if timezone.make_aware(plain).astimezone(UTC) == moment.astimezone(UTC):
        return plain.isoformat(timespec="seconds")
    return local.isoformat(timespec="seconds")


def _score_field(sessions):
    """Return ``sessions`` and the name to filter their score by.

    SQLite's planner serves a score condition on the bare column from the
    score index, reading every session in the range and sorting them: seconds
    for a common range over a million sessions. On ``risk_score + 0`` it walks
    the session time index, which contains the score, in page order and stops
    after one page. A range that matches almost nothing then reads the whole
    index, which is still faster than the first plan.
    """
    if connection.vendor != "sqlite":
        return sessions, "risk_score"
    return sessions.alias(unindexed_score=F("risk_score") + 0), "unindexed_score"


def documented_check_names():
    return [name for checks in DOCUMENTED_CHECKS.values() for name in checks]


class SessionFilterForm(forms.Form):
    """Combinable session filters, parsed from a GET query string.

    Every field is optional. An invalid value gets a form error and is left
    out, so the other filters still apply. Pass ``user_id`` to fix the user,
    as the user page does, which removes the user field.
    """

    user = forms.CharField(label="User ID", required=False, strip=True)
    score_min = forms.IntegerField(
        label="Score from", required=False, min_value=0, max_value=100
    )
    score_max = forms.IntegerField(
        label="Score to", required=False, min_value=0, max_value=100
    )
    band = forms.ChoiceField(
        label="Band", required=False, choices=[("", "Any band"), *Band.choices]
    )
    flagged = forms.BooleanField(label="Flagged only", required=False)
    decision = forms.ChoiceField(
        label="Decision",
        required=False,
        choices=[
            ("", "Any or none"),
            (UNDECIDED, "Undecided"),
            (DECIDED, "Any decision"),
            *DecisionKind.choices,
        ],
        help_text="A session's current decision is its newest.",
    )
    action = forms.CharField(
        label="Recommended action",
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"list": "action-options"}),
    )
    tag = forms.CharField(label="Tag", required=False, strip=False)
    check_name = forms.CharField(
        label="Check",
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"list": "check-options"}),
    )
    check_status = forms.CharField(
        label="Check status",
        required=False,
        strip=True,
        widget=forms.TextInput(attrs={"list": "status-options"}),
    )
    since = DayOrTimeField(
        label="From",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "YYYY-MM-DD"}),
    )
    until = DayOrTimeField(
        label="To",
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "YYYY-MM-DD"}),
        help_text=(
            "Inclusive, in your time zone. A date, or a date and time such as "
            "2026-03-01T14:30."
        ),
    )
    q = forms.CharField(
        label="Search",
        required=False,
        strip=True,
        help_text="Part of a session ID, user ID, tag or explanation.",
    )

    def __init__(self, data, *, user_id=None, **kwargs):
        super().__init__(data, **kwargs)
        self.fixed_user_id = user_id
        if user_id is not None:
            del self.fields["user"]

    def clean(self):
        cleaned = super().clean()
        low, high = cleaned.get("score_min"), cleaned.get("score_max")
        if low is not None and high is not None and low > high:
            self.add_error(
                "score_max",
                f"Score to ({high}) is below score from ({low}), so it was ignored.",
            )
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and _is_empty_range(since, until):
            self.add_error(
                "until",
                f"To ({self.data['until']}) is before from ({self.data['since']}), "
                "so it was ignored.",
            )
        return cleaned

    def invalid_values(self):
        """Return one message per invalid field, naming the value received."""
        messages = []
        for name, errors in self.errors.items():
            label = self.fields[name].label if name in self.fields else name
            value = self.data.get(name, "")
            messages.append(f'{label} "{value}" is invalid: {" ".join(errors)}')
        return messages

    def filter(self, sessions, *, search_index=True):
        """Return ``sessions`` narrowed by every valid filter.

        With ``search_index=False`` the free-text search tests each session
        without narrowing them through the search index first.
        """
        self.is_valid()
        data = self.cleaned_data
        thresholds = current_thresholds()
        if self.user_id:
            sessions = sessions.filter(user_id=self.user_id)
        sessions, score = _score_field(sessions)
        if data.get("score_min") is not None:
            sessions = sessions.filter(**{f"{score}__gte": data["score_min"]})
        if data.get("score_max") is not None:
            sessions = sessions.filter(**{f"{score}__lte": data["score_max"]})
        if data.get("band"):
            sessions = sessions.filter(thresholds.band_q(data["band"], score))
        if data.get("flagged"):
            sessions = sessions.filter(thresholds.flagged_q(score))
        if data.get("decision"):
            sessions = self._filter_decision(sessions, data["decision"])
        if data.get("action"):
            sessions = sessions.filter(recommended_action=data["action"])
        if data.get("tag"):
            sessions = sessions.filter(HasTag(F("tags"), data["tag"]))
        sessions = self._filter_check(sessions, data)
        sessions = self._filter_time(sessions, data)
        if data.get("q"):
            text = data["q"]
            sessions = sessions.filter(
                self._text_q(text) if search_index else search_q(text)
            )
        return sessions

    @property
    def user_id(self):
        """The user ID whose sessions the filters select, or None for all users."""
        self.is_valid()
        return self.fixed_user_id or self.cleaned_data.get("user") or None

    @property
    def search_text(self):
        """The valid free-text search, or "" without one."""
        self.is_valid()
        return self.cleaned_data.get("q") or ""

    def _filter_check(self, sessions, data):
        # EXISTS rather than a join, so a session with several matching checks
        # (the same name in both groups) is listed once.
        checks = {}
        if data.get("check_name"):
            checks["name"] = data["check_name"]
        if data.get("check_status"):
            # Statuses are stored as received ("Detected"); a typed
            # "detected" in a shared URL still means the same status.
            checks["status__iexact"] = data["check_status"]
        if not checks:
            return sessions
        matching = SessionCheck.objects.filter(session=OuterRef("pk"), **checks)
        return sessions.filter(Exists(matching))

    def _filter_decision(self, sessions, decision):
        any_decision = Exists(Decision.objects.filter(session=OuterRef("pk")))
        if decision == UNDECIDED:
            return sessions.filter(~any_decision)
        if decision == DECIDED:
            return sessions.filter(any_decision)
        newest_kind = Subquery(newest_session_decision().values("kind")[:1])
        return sessions.alias(current_decision=newest_kind).filter(
            current_decision=decision
        )

    def _filter_time(self, sessions, data):
        if data.get("since"):
            sessions = sessions.filter(session_time__gte=range_start(data["since"]))
        if data.get("until"):
            sessions = sessions.filter(range_end_q(data["until"]))
        return sessions

    def _text_q(self, text):
        matches = search_q(text)
        if not can_prefilter(text, connection.vendor):
            # NOTE: a search of one or two characters on SQLite, or one with a
            # quote, backslash or control character on PostgreSQL, scans every
            # session that the other filters leave.
            return matches
        return Q(SearchCandidates(text)) & matches

    def querystring(self, **extra):
        """Return the filters as received, plus ``extra``, as a query string.

        Values are kept even when invalid, so a link shows the same errors.
        An ``extra`` value of None removes that parameter.
        """
        params = QueryDict(mutable=True)
        for name in self.fields:
            value = self.data.get(name)
            if value:
                params[name] = value
        for name, value in extra.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = value
        return params.urlencode()

    def export_url(self):
        """Return the CSV export URL for exactly these filters, fixed user included."""
        extra = {} if self.fixed_user_id is None else {"user": self.fixed_user_id}
        query = self.querystring(**extra)
        url = reverse("session_export")
        return f"{url}?{query}" if query else url

    def offered_actions(self):
        """Return the documented actions, plus the requested one if undocumented.

        Listing the actions found in the data would scan every session on each
        page view, so an undocumented action is typed in, or reached by a link.
        """
        requested = self.data.get("action")
        if requested and requested not in DOCUMENTED_ACTIONS:
            return [*DOCUMENTED_ACTIONS, requested]
        return list(DOCUMENTED_ACTIONS)

    def offered_checks(self):
        return documented_check_names()

    def offered_statuses(self):
        return DOCUMENTED_STATUSES
