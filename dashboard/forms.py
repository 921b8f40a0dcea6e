"""Forms of the dashboard pages."""

from django import forms

from roundtable_sync.watchlist import InvalidUserIdError, clean_user_ids


class AddUsersForm(forms.Form):
    user_ids = forms.CharField(
        label="User IDs",
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=(
            "Roundtable user IDs, one per line. Leading and trailing whitespace "
            "is trimmed and blank lines are ignored. If any ID is invalid, "
            "none is added."
        ),
    )
    note = forms.CharField(
        label="Note",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional, stored with every user added here.",
    )

    def clean_user_ids(self):
        # Split on "\n" only: str.splitlines() would also split inside an ID
        # on characters such as U+2028, and IDs are opaque text.
        lines = self.cleaned_data["user_ids"].split("\n")
        try:
            return clean_user_ids(line for line in lines if line.strip())
        except InvalidUserIdError as error:
            raise forms.ValidationError(str(error)) from None


class RemoveUserForm(forms.Form):
    purge = forms.BooleanField(
        label="Also delete the stored sessions",
        required=False,
        help_text=(
            "Deletes this user's stored sessions and coverage gaps for good. "
            "Sessions older than the newest 100 cannot be fetched again."
        ),
    )
