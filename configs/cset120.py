"""NTU RGB+D 120, cross-setup (train on even setup IDs), joint stream, 120 classes."""

from configs import default


def get_config():
  return default.get_config('cset120')
