"""Validation shared by the watched user IDs and watched tags."""

import unicodedata

MAX_LENGTH = 255


def clean_identifier(value, label, error_class):
    """Return ``value`` with surrounding whitespace trimmed, or raise.

    ``label`` names the value in messages ("User ID", "Tag"). Any other
    characters are kept, because Roundtable IDs and tags are opaque.
    """
    if not isinstance(value, str):
        raise error_class(f"{label} {value!r} is not text.")
    cleaned = value.strip()
    if not cleaned:
        raise error_class(f"{label} is empty (or only whitespace).")
    if len(cleaned) > MAX_LENGTH:
        raise error_class(
            f"{label} {cleaned[:40]!r}… is {len(cleaned)} characters long; the "
            f"maximum is {MAX_LENGTH}."
        )
    if any(unicodedata.category(char) == "Cc" for char in cleaned):
        raise error_class(
            f"{label} {cleaned!r} contains a control character (such as a tab, "
            "newline or NUL): remove it."
        )
    return cleaned


def clean_all(values, clean_one, error_class):
    """Clean every value and raise all errors together, if any.

    Duplicates after trimming are reduced to one, keeping the first order.
    """
    cleaned, errors = [], []
    for value in values:
        try:
            item = clean_one(value)
        except error_class as error:
            errors.append(str(error))
            continue
        if item not in cleaned:
            cleaned.append(item)
    if errors:
        raise error_class(" ".join(errors))
    return cleaned
