"""NTU RGB+D 60 cross-view, joint stream: the paper's main setting (Table I, CV)."""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ntu_rgbd/xview'
  config.stream = 'joint'
  config.model.num_classes = 60
  return config
