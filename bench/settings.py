"""Django settings for the benchmarks: the product's, on a database of their own.

The runner sets BENCH_DATABASE_URL before Django starts: a SQLite file in the
bench directory, or a ``bench_...`` database on the PostgreSQL server that
DATABASE_URL names. The demo database is never touched.
"""

import os
import secrets

os.environ["DJANGO_DEBUG"] = "0"
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("ROUNDTABLE_API_KEY", "bench-key")
os.environ.setdefault("ROUNDTABLE_API_URL", "http://127.0.0.1:9")

import dj_database_url  # noqa: E402

from dashboard.settings import *  # noqa: E402,F403

DATABASES = {"default": dj_database_url.parse(os.environ["BENCH_DATABASE_URL"])}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The product's SQLite options, so the bench measures what users run.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

# The product's URLs and the empty page that bench/pages.py measures.
ROOT_URLCONF = "bench.urls"
# The test client's host name.
ALLOWED_HOSTS = ["testserver"]
# The test client speaks plain HTTP; in production a proxy terminates TLS,
# and the redirect to HTTPS is no part of the page work measured here.
SECURE_SSL_REDIRECT = False
# Pages are rendered without collectstatic, so the manifest storage of
# production would fail on every static tag.
STORAGES["staticfiles"]["BACKEND"] = (  # noqa: F405
    "django.contrib.staticfiles.storage.StaticFilesStorage"
)
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Warnings from the product (such as an export cut short) still show.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
Q_CLUSTER = {**Q_CLUSTER, "sync": True}  # noqa: F405
