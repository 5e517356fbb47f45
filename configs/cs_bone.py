"""NTU RGB+D 60 cross-subject, bone stream."""

from configs import default


def get_config():
  return default.get_config('cs,bone')
