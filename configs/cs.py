"""NTU RGB+D 60, cross-subject (20 training subjects), joint stream."""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ntu_rgbd/xsub'
  config.model.num_classes = 60
  config.stream = 'joint'
  return config
