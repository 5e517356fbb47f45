"""NTU RGB+D 120, cross-subject (53 training subjects), joint stream, 120 classes."""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ntu_rgbd/xsub120'
  config.model.num_classes = 120
  config.stream = 'joint'
  return config
