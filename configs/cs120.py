"""NTU RGB+D 120, cross-subject (53 training subjects), joint stream, 120 classes."""

from configs import default


def get_config():
  return default.get_config('cs120')
