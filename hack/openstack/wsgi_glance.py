"""gunicorn entry point for Glance: `wsgi_glance:application`.

glance.wsgi.api finds glance-api.conf and glance-api-paste.ini in
OS_GLANCE_CONFIG_DIR and ignores sys.argv; reset it anyway so that no
library reading it sees gunicorn's flags.
"""
import sys

sys.argv = [sys.argv[0]]

import cloudvol_sqlite  # noqa: E402,F401  (BEGIN IMMEDIATE; see the module)
from glance.wsgi.api import application  # noqa: E402,F401
