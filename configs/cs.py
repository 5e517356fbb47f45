"""NTU RGB+D 60, cross-subject (20 training subjects), joint stream."""

from configs import default


def get_config():
  return default.get_config('cs')
