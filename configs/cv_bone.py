"""NTU RGB+D 60 cross-view, bone stream (the second stream of 2s-AGCN's fusion)."""

from configs import cv


def get_config():
  config = cv.get_config()
  config.stream = 'bone'
  return config
