"""gunicorn entry point for Keystone: `wsgi_keystone:application`.

keystone.wsgi.api reads its config files from OS_KEYSTONE_CONFIG_DIR, but
oslo.config also parses sys.argv, which under gunicorn holds gunicorn's own
flags; reset it before the import.
"""
import sys

sys.argv = [sys.argv[0]]

import cloudvol_sqlite  # noqa: E402,F401  (BEGIN IMMEDIATE; see the module)
from keystone.wsgi.api import application  # noqa: E402,F401
