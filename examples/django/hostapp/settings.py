"""Settings of the host-app example: a small social app that adds Livekeep.

Everything that differs between machines comes from the environment, so that the end-to-end
test (tests/e2e/django.test.mjs) and a developer run the same code. The four LIVEKEEP_*
settings are the whole integration: where Livekeep is, the secret both sides use for tokens,
the secret Livekeep signs webhooks with, and where the recorder package was built.
"""

import mimetypes
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BASE_DIR.parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "social",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hostapp.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "hostapp.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "fr-fr"
TIME_ZONE = os.environ.get("DJANGO_TIME_ZONE", "Europe/Paris")
USE_I18N = True
USE_TZ = True

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "feed"
LOGOUT_REDIRECT_URL = "feed"

STATIC_URL = "static/"
# The built @livekeep/recorder package (scripts/build.sh writes it to recorder-wasm/pkg),
# served as /static/livekeep-recorder/; an app that bundles its front end would instead
# `npm install @livekeep/recorder`.
STATICFILES_DIRS = [
    (
        "livekeep-recorder",
        os.environ.get("LIVEKEEP_RECORDER_DIR", str(REPO_ROOT / "recorder-wasm" / "pkg")),
    ),
]
# Browsers compile the recorder's module while it downloads only when it is served as wasm.
mimetypes.add_type("application/wasm", ".wasm")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Livekeep -------------------------------------------------------------------------------
# Where browsers reach Livekeep (its --public-url).
LIVEKEEP_URL = os.environ.get("LIVEKEEP_URL", "http://127.0.0.1:8080").rstrip("/")
# Shared with `livekeep serve --auth-jwt-secret`: this app mints the users' tokens with it.
LIVEKEEP_JWT_SECRET = os.environ.get("LIVEKEEP_JWT_SECRET", "")
LIVEKEEP_JWT_ISSUER = os.environ.get("LIVEKEEP_JWT_ISSUER", "hostapp")
LIVEKEEP_JWT_AUDIENCE = os.environ.get("LIVEKEEP_JWT_AUDIENCE", "livekeep")
# Short-lived on purpose: the recorder asks for a new one (getToken) whenever Livekeep
# answers 401, so a three-hour live outlives many tokens.
LIVEKEEP_TOKEN_TTL = int(os.environ.get("LIVEKEEP_TOKEN_TTL", "900"))
# Shared with `livekeep serve --webhook-secret`: Livekeep signs every event with it.
LIVEKEEP_WEBHOOK_SECRET = os.environ.get("LIVEKEEP_WEBHOOK_SECRET", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"social": {"handlers": ["console"], "level": "INFO"}},
}
