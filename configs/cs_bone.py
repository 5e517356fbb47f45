"""NTU RGB+D 60 cross-subject, bone stream."""

from configs import cs


def get_config():
  config = cs.get_config()
  config.stream = 'bone'
  return config
