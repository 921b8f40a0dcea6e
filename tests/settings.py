"""Settings for the test suite: the product's settings with test-only changes.

TEST_DATABASE_URL picks the database (SQLite by default); the test command
sets it from TEST_POSTGRES_URL for the PostgreSQL pass.
"""

import os
import tempfile

os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("ROUNDTABLE_API_KEY", "test-key")
# A closed loopback port, so a test that polls without pointing the client at
# its sandbox fails fast instead of reaching the real API.
os.environ.setdefault("ROUNDTABLE_API_URL", "http://127.0.0.1:9")

import dj_database_url  # noqa: E402

from dashboard.settings import *  # noqa: E402,F403

_test_url = os.environ.get("TEST_DATABASE_URL")
if _test_url:
    DATABASES = {"default": dj_database_url.parse(_test_url)}  # noqa: F405
    # One test database per run, so two runs on one server never collide.
    DATABASES["default"]["TEST"] = {
        "NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
    }

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = (  # noqa: F405
    "django.contrib.staticfiles.storage.StaticFilesStorage"
)

# No account-wide request spacing, so that tests running tasks inline never
# sleep; the throttle's own tests turn it on.
ROUNDTABLE_REQUESTS_PER_SECOND = 0

# Run django-q2 tasks inline so tests see their effects and their errors.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}  # noqa: F405

# A file-backed SQLite test database, so that a process started by a test (a
# django-q2 cluster) sees the same data. One file per test run, so two runs
# in the same checkout never share it.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(
            tempfile.gettempdir(), f"roundtable-test-{os.getpid()}.sqlite3"
        )
    }

# Serve static files from the finders, as in debug: tests do not collectstatic.
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
