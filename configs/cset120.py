"""NTU RGB+D 120, cross-setup (train on even setup IDs), joint stream, 120 classes."""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ntu_rgbd/xset120'
  config.model.num_classes = 120
  config.stream = 'joint'
  return config
