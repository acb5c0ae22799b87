"""A test-only Cinder volume driver: each volume is a sparse file.

hack/openstack.sh runs cinder-volume with it so that the real Cinder API,
scheduler and volume manager do their whole job (states, quotas, refusals,
upload-to-image through qemu-img into Glance) with no LVM, iSCSI or Ceph.
Never use it outside tests: there is no data path to an instance.

Configuration (in the backend's section of cinder.conf):

    volume_driver = cloudvol_sparse_driver.SparseFileDriver
    sparse_volume_dir = /path/to/folder     # where the files live
    sparse_capacity_gb = 1000               # what the scheduler is told

The base class is Cinder's own logging fake (cinder/tests/fake_driver.py),
which answers every export and connection call without touching the host;
this class adds real files where the upload-to-image path needs them.
"""

import os
import shutil

from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

from cinder.tests import fake_driver
from cinder.volume import configuration

LOG = logging.getLogger(__name__)

sparse_opts = [
    cfg.StrOpt('sparse_volume_dir',
               help='Folder holding one sparse file per volume.'),
    cfg.IntOpt('sparse_capacity_gb', default=1000,
               help='Capacity reported to the scheduler, in GiB.'),
]

CONF = cfg.CONF
CONF.register_opts(sparse_opts, group=configuration.SHARED_CONF_GROUP)


class SparseFileDriver(fake_driver.FakeLoggingVolumeDriver):
    """Volumes are sparse files named after the volume."""

    VERSION = '1.0.0'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.configuration.append_config_values(sparse_opts)
        self.backend_name = (
            self.configuration.safe_get('volume_backend_name') or 'sparse')
        self.protocol = 'fake'

    def _dir(self):
        folder = self.configuration.sparse_volume_dir
        if not folder:
            folder = os.path.join(CONF.state_path, 'sparse-volumes')
        os.makedirs(folder, exist_ok=True)
        return folder

    def local_path(self, volume, vg=None):
        return os.path.join(self._dir(), volume['name'])

    def _truncate(self, volume, size_gb):
        with open(self.local_path(volume), 'ab') as f:
            f.truncate(int(size_gb) * units.Gi)

    def check_for_setup_error(self):
        self._dir()

    def create_volume(self, volume):
        self._truncate(volume, volume['size'])
        LOG.info('created sparse volume %s (%s GiB)',
                 self.local_path(volume), volume['size'])
        return {}

    def delete_volume(self, volume):
        try:
            os.unlink(self.local_path(volume))
        except FileNotFoundError:
            pass

    def extend_volume(self, volume, new_size):
        self._truncate(volume, new_size)

    def create_cloned_volume(self, volume, src_vref):
        shutil.copyfile(self.local_path(src_vref), self.local_path(volume))
        self._truncate(volume, volume['size'])
        return {}

    def create_volume_from_snapshot(self, volume, snapshot):
        # Snapshots keep no data here; the new volume is blank.
        self._truncate(volume, volume['size'])
        return {}

    # copy_volume_to_image and copy_image_to_volume come from the LVM driver
    # (the fake's base): they read and write local_path() with qemu-img and
    # the Glance client, which is the real upload-to-image and
    # create-from-image path.

    def copy_image_to_volume(self, context, volume, image_service, image_id,
                             disable_sparse=False):
        # qemu-img convert replaces the file with one of the image's size; a
        # block device (LVM's) keeps the volume's. Grow it back, sparsely.
        super().copy_image_to_volume(context, volume, image_service,
                                     image_id, disable_sparse=disable_sparse)
        self._truncate(volume, volume['size'])

    def _update_volume_stats(self):
        used = 0
        for name in os.listdir(self._dir()):
            used += os.stat(os.path.join(self._dir(), name)).st_size
        total = self.configuration.sparse_capacity_gb
        free = max(total - used // units.Gi, 0)
        self._stats = {
            'volume_backend_name': self.backend_name,
            'vendor_name': 'cloudvol tests',
            'driver_version': self.VERSION,
            'storage_protocol': self.protocol,
            'pools': [{
                'pool_name': self.backend_name,
                'total_capacity_gb': total,
                'free_capacity_gb': free,
                'provisioned_capacity_gb': used // units.Gi,
                'reserved_percentage': 0,
                'QoS_support': False,
                # Files are sparse, but the scheduler counts apparent sizes.
                'thin_provisioning_support': False,
                'thick_provisioning_support': True,
                'multiattach': True,
                'filter_function': self.get_filter_function(),
                'goodness_function': self.get_goodness_function(),
            }],
        }
