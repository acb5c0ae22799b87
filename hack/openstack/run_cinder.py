"""Starts cinder-scheduler or cinder-volume with cloudvol_sqlite loaded.

    python run_cinder.py scheduler|volume --config-file cinder.conf

Same as the `cinder-scheduler` / `cinder-volume` console scripts, plus the
sqlite transaction fix (imported after eventlet's monkey patching, as
Cinder's own modules are).
"""
import sys

from cinder import monkey_patch

monkey_patch.patch()

import cloudvol_sqlite  # noqa: E402,F401

binary = sys.argv.pop(1)
sys.argv[0] = f'cinder-{binary}'
if binary == 'scheduler':
    from cinder.cmd.scheduler import main  # noqa: E402
elif binary == 'volume':
    from cinder.cmd.volume import main  # noqa: E402
else:
    sys.exit(f'unknown cinder binary {binary}')
sys.exit(main())
