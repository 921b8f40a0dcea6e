"""Typed readers for configuration taken from environment variables.

Each reader raises ImproperlyConfigured naming the variable, the rejected
value and the accepted form, so a typo stops start-up instead of running
with a silently different setting.
"""

import logging
import math
import os
import re
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name):
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name, default=""):
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name, default=False):
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={value!r} is not a boolean: use 1, true, yes or on to enable "
        "and 0, false, no or off to disable."
    )


def env_int(name, default, *, minimum=None, maximum=None):
    return _env_number(name, default, int, "a whole number", minimum, maximum)


def env_float(name, default, *, minimum=None, maximum=None):
    return _env_number(name, default, float, "a number", minimum, maximum)


def _env_number(name, default, kind, description, minimum, maximum):
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = kind(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not {description}.") from None
    if not math.isfinite(number):
        raise ImproperlyConfigured(f"{name}={value!r} is not a finite number.")
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(
            f"{name}={value!r} is below the minimum of {minimum}."
        )
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(
            f"{name}={value!r} is above the maximum of {maximum}."
        )
    return number


def env_list(name, default=()):
    """Read a comma-separated list, dropping empty items."""
    value = _raw(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_http_url(name, default):
    """Read an http(s) base URL and return it without a trailing slash."""
    value = env_str(name, default)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not an http or https URL: "
            "give a base URL such as https://api.roundtable.ai."
        )
    if parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{name}={value!r} has a query or fragment: give only the base URL."
        )
    return value.rstrip("/")


def env_redis_url(name):
    """Read an optional Redis URL (redis://, rediss:// or unix://)."""
    value = env_str(name)
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix"):
        # Only the scheme is echoed: the rest may contain a password.
        raise ImproperlyConfigured(
            f"{name} has the scheme {parts.scheme!r}: give a Redis URL such as "
            "redis://127.0.0.1:6379/0 (or rediss:// for TLS, unix:// for a socket)."
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} has no host name: give a Redis URL such as "
            "redis://127.0.0.1:6379/0."
        )
    return value


def env_database(name, default):
    """Read a database URL into a DATABASES entry with dj-database-url."""
    value = env_str(name, default)
    try:
        return dj_database_url.parse(value)
    except ValueError:
        # Only the scheme is echoed: the rest may contain a password.
        scheme = urlsplit(value).scheme
        raise ImproperlyConfigured(
            f"{name} with the scheme {scheme!r} is not a valid database URL: "
            "give one such as postgres://user:password@host:5432/name or "
            "sqlite:////absolute/path/db.sqlite3."
        ) from None


def env_log_level(name, default="INFO"):
    """Read a logging level name such as DEBUG, INFO or WARNING."""
    value = env_str(name, default).upper()
    if not isinstance(logging.getLevelName(value), int):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a logging level: use DEBUG, INFO, WARNING, "
            "ERROR or CRITICAL."
        )
    return value


# A subset of the RFC 9110 token characters: the ones proxies use in header
# names, and the ones that map one-to-one to a request.META key.
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")


def env_header_meta_key(name):
    """Read an HTTP header name and return its request.META key, or "".

    X-Forwarded-Proto becomes HTTP_X_FORWARDED_PROTO, the key Django and WSGI
    servers use for that header.
    """
    value = env_str(name)
    if not value:
        return ""
    if not _HEADER_NAME.fullmatch(value):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not an HTTP header name: give a name such as "
            "X-Forwarded-Proto, with letters, digits and hyphens only."
        )
    return "HTTP_" + value.upper().replace("-", "_")
