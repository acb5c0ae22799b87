"""gunicorn entry point for the Cinder API: `wsgi_cinder:application`.

cinder.wsgi.api parses sys.argv as cinder-api's command line (under
gunicorn it holds gunicorn's flags); give it only the config file named by
CLOUDVOL_CINDER_CONF.
"""
import os
import sys

sys.argv = ['cinder-api', '--config-file', os.environ['CLOUDVOL_CINDER_CONF']]

import cloudvol_sqlite  # noqa: E402,F401  (BEGIN IMMEDIATE; see the module)
from cinder.wsgi.api import application  # noqa: E402,F401
