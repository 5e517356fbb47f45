"""NTU RGB+D 60, cross-view (train cameras 2 and 3, test camera 1), joint stream."""

from configs import default


def get_config():
  return default.get_config('cv')
