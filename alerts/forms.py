"""Forms for editing alert rules and webhook endpoints."""

from django import forms
from django.core.validators import validate_email

from alerts.models import AlertRule, RuleKind, WebhookEndpoint
from alerts.urlcheck import UnsafeWebhookURL, validate_webhook_url

THRESHOLD_LABELS = {
    RuleKind.SCORE_RISE: (
        "Score rise, in points",
        "Alert when a score rises by more than this many points between two polls.",
    ),
    RuleKind.SYNC_FAILING: (
        "Time without a successful sync, in minutes",
        "Alert once per failure episode longer than this.",
    ),
}
MAX_RECIPIENTS = 20


def split_items(text):
    return [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]


class RuleForm(forms.ModelForm):
    check_names_text = forms.CharField(
        label="Checks",
        required=False,
        help_text="Comma-separated check names, such as vpn, agent_behavior. "
        "Empty alerts on every check.",
    )
    recipients_text = forms.CharField(
        label="E-mail recipients",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Addresses separated by commas or new lines.",
    )

    class Meta:
        model = AlertRule
        fields = ["enabled", "threshold", "webhooks"]
        widgets = {"webhooks": forms.CheckboxSelectMultiple}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kind = self.instance.kind
        if kind in THRESHOLD_LABELS:
            field = self.fields["threshold"]
            field.label, field.help_text = THRESHOLD_LABELS[kind]
            field.required = True
            field.min_value = 1
            field.widget.attrs["min"] = 1
        else:
            del self.fields["threshold"]
        if kind == RuleKind.FIRST_DETECTION:
            self.initial["check_names_text"] = ", ".join(self.instance.check_names)
        else:
            del self.fields["check_names_text"]
        self.initial["recipients_text"] = "\n".join(self.instance.email_recipients)
        self.fields["webhooks"].required = False
        self.fields["webhooks"].help_text = "Endpoints that receive this rule's alerts."

    def clean_threshold(self):
        threshold = self.cleaned_data["threshold"]
        if threshold is None or threshold < 1:
            raise forms.ValidationError("Enter a whole number of at least 1.")
        return threshold

    def clean_check_names_text(self):
        names = split_items(self.cleaned_data["check_names_text"])
        too_long = [name for name in names if len(name) > 255]
        if too_long:
            raise forms.ValidationError("Check names are at most 255 characters.")
        return sorted(set(names))

    def clean_recipients_text(self):
        addresses = split_items(self.cleaned_data["recipients_text"])
        if len(addresses) > MAX_RECIPIENTS:
            raise forms.ValidationError(
                f"Enter at most {MAX_RECIPIENTS} addresses; use a mailing list "
                "for more."
            )
        for address in addresses:
            try:
                validate_email(address)
            except forms.ValidationError:
                raise forms.ValidationError(
                    f"{address!r} is not a valid e-mail address."
                ) from None
        return addresses

    def save(self, commit=True):
        rule = super().save(commit=False)
        if "check_names_text" in self.cleaned_data:
            rule.check_names = self.cleaned_data["check_names_text"]
        rule.email_recipients = self.cleaned_data["recipients_text"]
        if commit:
            rule.save()
            self.save_m2m()
        return rule


class WebhookForm(forms.ModelForm):
    url = forms.URLField(
        label="URL",
        max_length=2000,
        assume_scheme="https",
        help_text="http or https. Private, loopback and metadata addresses are "
        "rejected unless the host is in WEBHOOK_ALLOWED_HOSTS.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["name", "url", "enabled"]

    def clean_url(self):
        url = self.cleaned_data["url"]
        try:
            validate_webhook_url(url)
        except UnsafeWebhookURL as error:
            raise forms.ValidationError(str(error)) from None
        return url
