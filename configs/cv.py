"""NTU RGB+D 60, cross-view (train cameras 2 and 3, test camera 1), joint stream."""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ntu_rgbd/xview'
  config.model.num_classes = 60
  config.stream = 'joint'
  return config
