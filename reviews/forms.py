from django import forms

from reviews.models import DecisionKind

MAX_NOTE_LENGTH = 4000


class DecisionForm(forms.Form):
    kind = forms.ChoiceField(
        label="Decision", choices=DecisionKind.choices, widget=forms.RadioSelect
    )
    note = forms.CharField(
        label="Note",
        required=False,
        max_length=MAX_NOTE_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why, and what evidence you used. Visible to every analyst.",
    )


class QueueDecisionForm(DecisionForm):
    session = forms.CharField(widget=forms.HiddenInput)


class ThresholdsForm(forms.Form):
    """Candidate review and block thresholds: scores from 1 to 100."""

    review = forms.IntegerField(label="Review from score", min_value=1, max_value=100)
    block = forms.IntegerField(label="Block from score", min_value=1, max_value=100)

    def clean(self):
        cleaned = super().clean()
        review, block = cleaned.get("review"), cleaned.get("block")
        if review is not None and block is not None and review >= block:
            self.add_error(
                "block",
                f"Block from score ({block}) must be above review from score "
                f"({review}).",
            )
        return cleaned
