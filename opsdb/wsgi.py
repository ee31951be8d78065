"""WSGI entry point (gunicorn opsdb.wsgi); refuses to start when production pages would fail."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsdb.settings")
application = get_wsgi_application()

from opsdb.deploy_checks import refuse_unsafe_start  # noqa: E402  (needs the apps loaded above)

refuse_unsafe_start()
