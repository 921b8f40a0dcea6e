"""Django settings, read from environment variables.

The defaults run the product out of the box in debug mode on an embedded
SQLite database. The README lists every variable with its default and unit.
"""

import secrets
import zoneinfo
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from dashboard.env import (
    env_bool,
    env_database,
    env_float,
    env_header_meta_key,
    env_http_url,
    env_int,
    env_list,
    env_log_level,
    env_redis_url,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", False)


def _secret_key():
    key = env_str("DJANGO_SECRET_KEY")
    if key:
        if not DEBUG and len(key) < 50:
            raise ImproperlyConfigured(
                "DJANGO_SECRET_KEY is shorter than 50 characters. Generate one "
                "with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"
            )
        return key
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is missing and DJANGO_DEBUG is off. Set it to a "
            "random value, for example the output of: "
            "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
        )
    # In debug, keep one random key per checkout so logins survive restarts.
    key_file = BASE_DIR / ".dev-secret-key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()

ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "axes",
    "csp",
    "roundtable_sync",
    "workflow",
    "reviews",
    "alerts",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Above WhiteNoise, so static files get the policy too.
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "dashboard.idle_sessions.SlidingSessionExpiryMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "dashboard.middleware.AnalystTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a lockout into the login page
    # with the lockout message.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "dashboard.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.banners",
                "alerts.context_processors.unread_alerts",
            ],
        },
    },
]

WSGI_APPLICATION = "dashboard.wsgi.application"

DATABASES = {
    "default": env_database("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
_SQLITE = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
# Connections are kept for a minute by default. Otherwise a worker, the task
# broker and the result monitor each open one per task, which costs about
# 4 ms on SQLite (bench/fetch.py, profiled with py-spy) and starts a new
# server process on PostgreSQL. Django keeps one connection per thread.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
# A kept connection that the server closed (say on a restart) is replaced at
# the start of the next request or task instead of failing it.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if _SQLITE:
    # The web server and the worker write at the same time. WAL lets readers
    # run beside one writer, IMMEDIATE takes the write lock when a transaction
    # begins (so a transaction never fails upgrading a read lock), and the
    # timeout makes a second writer wait its turn instead of raising
    # "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_VALIDATORS = "django.contrib.auth.password_validation"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": f"{_VALIDATORS}.UserAttributeSimilarityValidator"},
    {"NAME": f"{_VALIDATORS}.MinimumLengthValidator"},
    {"NAME": f"{_VALIDATORS}.CommonPasswordValidator"},
    {"NAME": f"{_VALIDATORS}.NumericPasswordValidator"},
]

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "login"

# django-axes checks every login against the failure counts before the
# password, so a locked-out username or address is rejected even with the
# right password.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

# --- Security ----------------------------------------------------------------
# Production (DJANGO_DEBUG off) serves HTTPS only. The demo runs in debug on
# http://127.0.0.1:8000, so debug turns off the HTTPS redirect, HSTS and
# secure cookies whatever their variables are set to.
SECURE_SSL_REDIRECT = not DEBUG and env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = (
    0 if DEBUG else env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
)
# Both default on so that `check --deploy` passes. The preload token submits
# nothing by itself: it permits adding the site to the browsers' HSTS preload
# list. Turn both off if hosts below this one must stay on plain HTTP.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# A proxy that terminates TLS forwards plain HTTP, so Django needs a header to
# tell that the client used HTTPS. Trusting one lets any client that can reach
# the server directly claim HTTPS, so it is off unless the proxy sets it.
_PROXY_SSL_META_KEY = env_header_meta_key("DJANGO_SECURE_PROXY_SSL_HEADER")
SECURE_PROXY_SSL_HEADER = (
    (_PROXY_SSL_META_KEY, "https") if _PROXY_SSL_META_KEY else None
)
# Origins such as https://dashboard.example.com whose form posts are accepted
# although the Host header differs. Needed only when a proxy rewrites Host.
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

SESSION_COOKIE_HTTPONLY = True
# No script reads the CSRF cookie: forms carry the token in a hidden field.
CSRF_COOKIE_HTTPONLY = True
# Lax rather than Strict, so that a link from an alert e-mail or a chat opens
# the page signed in. Browsers still send no cookie with a cross-site POST.
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Page URLs contain user IDs and filters, so they are not sent to other sites.
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# Idle timeout: dashboard.idle_sessions pushes a signed-in session's expiry
# this far ahead of each request. Analysts keep the dashboard open through a
# working day, between meetings and reviews, so the default of 8 hours ends
# only a session left overnight or over a weekend.
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_IDLE_MINUTES", 480, minimum=5) * 60

# Content-Security-Policy from django-csp, sent in debug too, so the demo and
# the browser tests run under the production policy. Pages load scripts and
# styles from static files only: no inline script, style attribute or eval.
# Chart.js sets element.style from script, which the policy allows. In debug,
# django-csp leaves it off Django's 404 and 500 debug pages, which use
# inline styles.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# Login throttling by django-axes, with failures kept in the database so
# every web process counts the same attempts. Within the cool-off, a username
# is locked after LOGIN_FAILURE_LIMIT failures, and a client address after
# LOGIN_IP_FAILURE_LIMIT failures over any usernames. A successful login
# resets the counts of its username and address.
AXES_HANDLER = "dashboard.login_throttle.LoginThrottleHandler"
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_IP_FAILURE_LIMIT = env_int("LOGIN_IP_FAILURE_LIMIT", 20, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "dashboard.login_throttle.lockout_response"
AXES_CLIENT_IP_CALLABLE = "dashboard.login_throttle.client_ip"
# Behind a proxy every request comes from the proxy's address, so the client
# address must come from a header the proxy sets. Clients can send any header,
# so none is trusted unless configured.
LOGIN_CLIENT_IP_META_KEY = env_header_meta_key("DJANGO_CLIENT_IP_HEADER")
# Only failures count towards a lockout. Successful logins are not recorded,
# because no retention task would ever delete them.
AXES_DISABLE_ACCESS_LOG = True
# Not verbose, so no start-up banner in every command's output. Axes' log
# lines mask the username and address, and the admin lists failed attempts.
AXES_VERBOSE = False

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# Pages show times in this zone unless an analyst picks another on the
# preferences page. The database and the worker always work in UTC.
DASHBOARD_TIME_ZONE = env_str("DASHBOARD_TIME_ZONE", "UTC")
# Browsers reject some tz database names, such as "localtime" and "Factory",
# so the same rule as the preferences form applies: UTC or a name with a "/".
if DASHBOARD_TIME_ZONE not in zoneinfo.available_timezones() or (
    "/" not in DASHBOARD_TIME_ZONE and DASHBOARD_TIME_ZONE != "UTC"
):
    raise ImproperlyConfigured(
        f"DASHBOARD_TIME_ZONE={DASHBOARD_TIME_ZONE!r} is not a supported IANA "
        "time zone name: use UTC or an Area/Location name such as Europe/Paris."
    )
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": env_log_level("LOG_LEVEL")},
    # django-axes logs several INFO lines per login. Its warnings report each
    # failure and lockout.
    "loggers": {"axes": {"level": "WARNING"}},
}

# Roundtable Proof-of-Human API. The key is read here and passed only to the
# API client; it is never logged, stored in the database or rendered.
ROUNDTABLE_API_KEY = env_str("ROUNDTABLE_API_KEY")
ROUNDTABLE_API_URL = env_http_url("ROUNDTABLE_API_URL", "https://api.roundtable.ai")
ROUNDTABLE_CONNECT_TIMEOUT = env_float("ROUNDTABLE_CONNECT_TIMEOUT", 5.0, minimum=0.1)
ROUNDTABLE_READ_TIMEOUT = env_float("ROUNDTABLE_READ_TIMEOUT", 30.0, minimum=0.1)
ROUNDTABLE_REQUEST_DEADLINE = env_float(
    "ROUNDTABLE_REQUEST_DEADLINE", 60.0, minimum=1.0
)
ROUNDTABLE_MAX_ATTEMPTS = env_int("ROUNDTABLE_MAX_ATTEMPTS", 4, minimum=1, maximum=10)
ROUNDTABLE_MAX_RESPONSE_MB = env_float(
    "ROUNDTABLE_MAX_RESPONSE_MB", 50.0, minimum=0.001
)

# API requests per second for the whole account, however many workers and
# clusters run (roundtable_sync.throttle). 0 turns the limit off.
# NOTE: Roundtable documents no rate limit; 20 is a guess that leaves room
# for 6,000 polls in the default 300 s interval.
ROUNDTABLE_REQUESTS_PER_SECOND = env_float(
    "ROUNDTABLE_REQUESTS_PER_SECOND", 20.0, minimum=0.0, maximum=10000.0
)

# Polling. The interval is per watched user; the dispatcher runs every minute.
ROUNDTABLE_POLL_INTERVAL = env_int("ROUNDTABLE_POLL_INTERVAL", 300, minimum=60)
# Events-endpoint requests per minute for the whole account, spent on new
# sessions that arrived without user_logs. 0 turns event fetching off.
ROUNDTABLE_EVENTS_PER_MINUTE = env_int(
    "ROUNDTABLE_EVENTS_PER_MINUTE", 30, minimum=0, maximum=6000
)
# Score bands: allow below the review threshold, review from it, block from
# the block threshold (Roundtable's best-practice defaults are 50 and 70).
ROUNDTABLE_REVIEW_THRESHOLD = env_int(
    "ROUNDTABLE_REVIEW_THRESHOLD", 50, minimum=1, maximum=100
)
ROUNDTABLE_BLOCK_THRESHOLD = env_int(
    "ROUNDTABLE_BLOCK_THRESHOLD", 70, minimum=1, maximum=100
)
if ROUNDTABLE_REVIEW_THRESHOLD >= ROUNDTABLE_BLOCK_THRESHOLD:
    raise ImproperlyConfigured(
        f"ROUNDTABLE_REVIEW_THRESHOLD ({ROUNDTABLE_REVIEW_THRESHOLD}) must be "
        f"below ROUNDTABLE_BLOCK_THRESHOLD ({ROUNDTABLE_BLOCK_THRESHOLD})."
    )
# Days stored sessions, poll records and coverage gaps are kept, by session
# time; a daily worker task deletes older ones. 0 keeps them forever.
ROUNDTABLE_RETENTION_DAYS = env_int("ROUNDTABLE_RETENTION_DAYS", 0, minimum=0)
# Set by the run command when it starts the sandbox, so pages can say that
# they show sandbox data.
ROUNDTABLE_SANDBOX = env_bool("ROUNDTABLE_SANDBOX", False)

# Alerts. Links in e-mails and webhooks point at this address.
DASHBOARD_BASE_URL = env_http_url("DASHBOARD_BASE_URL", "http://127.0.0.1:8000")
# Host names or IP addresses that webhooks may reach even though they resolve
# to private, loopback or other internal addresses.
WEBHOOK_ALLOWED_HOSTS = env_list("WEBHOOK_ALLOWED_HOSTS")
WEBHOOK_CONNECT_TIMEOUT = env_float("WEBHOOK_CONNECT_TIMEOUT", 5.0, minimum=0.1)
WEBHOOK_READ_TIMEOUT = env_float("WEBHOOK_READ_TIMEOUT", 10.0, minimum=0.1)
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25, minimum=1, maximum=65535)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_float("EMAIL_TIMEOUT", 10.0, minimum=0.1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "roundtable-dashboard@localhost")

# django-q2, configured on purpose rather than left on its defaults. A poll
# task makes one API call bounded by ROUNDTABLE_REQUEST_DEADLINE; the events
# task stops itself within the same bound.
_TASK_TIMEOUT = int(ROUNDTABLE_REQUEST_DEADLINE * 2 + 30)
Q_CLUSTER = {
    "name": "roundtable",
    "workers": env_int("ROUNDTABLE_WORKERS", 2, minimum=1, maximum=64),
    # Kill a task that runs longer than this many seconds.
    "timeout": _TASK_TIMEOUT,
    # The broker hands an unacknowledged task out again after this many
    # seconds; it must exceed the timeout or a slow task would run twice.
    "retry": _TASK_TIMEOUT + 60,
    # A task is never run twice: the watched user's next due time is the
    # retry, and the client already retried inside the task.
    "max_attempts": 1,
    "ack_failures": True,
    # A worker that was down does not run every schedule slot it missed.
    "catch_up": False,
    # Successful tasks kept for the admin; failures are always kept. Kept
    # short because django-q2 1.11 loads every kept success, pickled result
    # included, to prune them after each task: at 250 that cost the result
    # monitor about 9 ms a task (bench/fetch.py, profiled with py-spy).
    "save_limit": 20,
    # Seconds the ORM broker sleeps after finding the queue empty, so the
    # max delay before it hands a newly queued task to a worker. Each check
    # is one SELECT on the queue table.
    "poll": 0.2,
    # Tasks a worker process runs before django-q2 replaces it with a fresh
    # one, a bound on memory that a library might leak.
    "recycle": env_int("ROUNDTABLE_WORKER_RECYCLE", 500, minimum=1),
    "label": "Task queue",
}
# The ORM broker keeps the queue in the database, with no extra server. With
# ROUNDTABLE_BROKER_URL set, the queue moves to Redis, which several clusters
# on several machines can share without polling the database for tasks.
ROUNDTABLE_BROKER_URL = env_redis_url("ROUNDTABLE_BROKER_URL")
if ROUNDTABLE_BROKER_URL:
    Q_CLUSTER["redis"] = ROUNDTABLE_BROKER_URL
else:
    Q_CLUSTER["orm"] = "default"
