"""Forms of the audit and erasure pages."""

from django import forms

from roundtable_sync.watchlist import InvalidUserIdError, clean_user_id
from workflow.models import AuditEvent


class AuditFilterForm(forms.Form):
    """Filters of the audit page; choices are the actors and actions recorded."""

    actor = forms.ChoiceField(label="Actor", required=False)
    action = forms.ChoiceField(label="Action", required=False)
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, data=None):
        super().__init__(data)
        events = AuditEvent.objects.order_by()
        self.fields["actor"].choices = _choices(events, "actor_label", "Any actor")
        self.fields["action"].choices = _choices(events, "action", "Any action")

    def filter(self, events):
        """Return ``events`` narrowed to the chosen actor and action."""
        if self.cleaned_data.get("actor"):
            events = events.filter(actor_label=self.cleaned_data["actor"])
        if self.cleaned_data.get("action"):
            events = events.filter(action=self.cleaned_data["action"])
        return events


def _choices(events, field, empty_label):
    values = events.values_list(field, flat=True).distinct().order_by(field)
    return [("", empty_label), *((value, value) for value in values)]


class EraseUserForm(forms.Form):
    user = forms.CharField(widget=forms.HiddenInput)

    def clean_user(self):
        try:
            return clean_user_id(self.cleaned_data["user"])
        except InvalidUserIdError as error:
            raise forms.ValidationError(str(error)) from None
