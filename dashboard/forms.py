"""Forms of the dashboard pages."""

import csv
import io

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

from dashboard.models import time_zone_names
from roundtable_sync.watchlist import InvalidUserIdError, clean_user_id, clean_user_ids

# Limits of a watchlist CSV import, in data rows (the header not counted) and
# in bytes of the uploaded file.
MAX_CSV_ROWS = 10_000
MAX_CSV_BYTES = 1024 * 1024
# Row errors listed in full; the rest are counted, so the message stays short.
MAX_LISTED_ROW_ERRORS = 20
USER_ID_HEADER = "user_id"


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
            "Deletes everything stored for this user for good, as an erasure "
            "does: sessions, poll history, coverage gaps, decisions and "
            "alerts. Polls will not store those sessions again."
        ),
    )


class ImportUsersForm(forms.Form):
    # Shares the watchlist page with AddUsersForm, whose "note" field would
    # otherwise get the same HTML id.
    prefix = "import"

    csv_file = forms.FileField(
        label="CSV file",
        help_text=(
            "User IDs from the first column, or from the column headed user_id "
            "when the first row has one. UTF-8, with or without a byte order "
            f"mark; at most {MAX_CSV_ROWS:,} rows and "
            f"{filesizeformat(MAX_CSV_BYTES)}. If any row is invalid, "
            "no ID is added."
        ),
    )
    note = forms.CharField(
        label="Note",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Optional, stored with every user added here.",
    )

    def clean_csv_file(self):
        upload = self.cleaned_data["csv_file"]
        if upload.size > MAX_CSV_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; the maximum is "
                f"{filesizeformat(MAX_CSV_BYTES)}. Split it into smaller files."
            )
        try:
            text = upload.read().decode("utf-8-sig")
        except UnicodeDecodeError as error:
            raise forms.ValidationError(
                f"The file is not UTF-8 text (invalid byte at offset "
                f"{error.start}). Save it as CSV UTF-8 and upload it again."
            ) from None
        return user_ids_from_csv(text)


def user_ids_from_csv(text):
    """Return the cleaned user IDs of a CSV text, or raise ValidationError.

    Every row is checked before any error is raised, so one upload reports
    all its invalid rows by number (the header, when present, is row 1).
    """
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as error:
        raise forms.ValidationError(f"The file is not valid CSV: {error}.") from None

    column, first_data_row = _user_id_column(rows)
    data_rows = [
        (number, row)
        for number, row in enumerate(rows, start=1)
        if number >= first_data_row and any(cell.strip() for cell in row)
    ]
    if len(data_rows) > MAX_CSV_ROWS:
        raise forms.ValidationError(
            f"The file has {len(data_rows):,} rows of user IDs; the maximum is "
            f"{MAX_CSV_ROWS:,}. Split it into smaller files."
        )
    if not data_rows:
        raise forms.ValidationError("The file contains no user IDs.")

    values, errors = [], []
    for number, row in data_rows:
        if column >= len(row):
            errors.append(f"Row {number} has no {USER_ID_HEADER} column.")
            continue
        try:
            values.append(clean_user_id(row[column]))
        except InvalidUserIdError as error:
            errors.append(f"Row {number}: {error}")
    if errors:
        raise forms.ValidationError(_summarise(errors))
    return clean_user_ids(values)


def _user_id_column(rows):
    """Return (column index, number of the first data row) of the CSV rows."""
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    if USER_ID_HEADER in header:
        return header.index(USER_ID_HEADER), 2
    return 0, 1


def _summarise(errors):
    listed = errors[:MAX_LISTED_ROW_ERRORS]
    more = len(errors) - len(listed)
    if more:
        listed.append(f"…and {more:,} more invalid rows.")
    return listed


class PreferencesForm(forms.Form):
    time_zone = forms.ChoiceField(
        label="Time zone",
        required=False,
        help_text="Every time on every page is shown in this zone, with its name.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        default = ("", f"Dashboard default ({settings.DASHBOARD_TIME_ZONE})")
        self.fields["time_zone"].choices = [default] + [
            (name, name) for name in time_zone_names()
        ]
