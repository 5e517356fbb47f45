"""NTU RGB+D 60 cross-view, bone stream (the second stream of 2s-AGCN's fusion)."""

from configs import default


def get_config():
  return default.get_config('cv,bone')
