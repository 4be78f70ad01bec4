"""WSGI entry point of the host-app example."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostapp.settings")
application = get_wsgi_application()
