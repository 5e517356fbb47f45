"""The demo's data: synthetic skeletons, written and built once per workdir.

`configs/demo.py` and `configs/coco17_demo.py` set `config.synthetic.enabled`;
`prepare_data` then writes the synthetic data in `config.synthetic.format` and
builds it with the config's builder, unless that dataset is already built:

  'skeleton'       NTU `.skeleton` files (`stbln_jax.data.synthetic`), for the
                   `ntu_rgbd` builder.
  'coco17_pickle'  one PYSKL/MMAction2 annotation pickle of COCO-17 2D keypoints
                   and its classes.txt (`stbln_jax.data.synthetic_keypoints`),
                   for the `pose_annotations` builder.
"""

import copy
import os
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections

from stbln_jax import input_pipeline
from stbln_jax import models

FORMATS = ('skeleton', 'coco17_pickle')
# Where each format's raw files go under data_dir.
_RAW_DIRS = {'skeleton': 'synthetic_skeletons', 'coco17_pickle': 'synthetic_coco17'}
# How each is built: of the keypoint tracks (performers, and spurious detections) the
# two of highest score are the persons, as PYSKL keeps them.
_BUILD_OPTIONS = {'skeleton': {}, 'coco17_pickle': {'max_persons': 2}}


def _write_raw(config: ml_collections.ConfigDict, fmt: str, raw_dir: str) -> str:
  """Writes the synthetic data of `config.synthetic` under `raw_dir`; says what."""
  subjects = tuple(range(1, config.synthetic.num_subjects + 1))
  # Imported here: only the demo needs the generators.
  if fmt == 'skeleton':
    from stbln_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    files = synthetic.write_synthetic_dataset(
        raw_dir, num_classes=config.synthetic.num_classes, subjects=subjects,
        seed=config.synthetic.seed)
    return f'{len(files)} synthetic .skeleton files'
  from stbln_jax.data import synthetic_keypoints  # pylint: disable=g-import-not-at-top
  data = synthetic_keypoints.write_synthetic_annotations(
      os.path.join(raw_dir, 'synthetic_coco17_2d.pkl'),
      num_classes=config.synthetic.num_classes, subjects=subjects,
      seed=config.synthetic.seed)
  return f'{len(data["annotations"])} synthetic COCO-17 2D annotations'


def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """Writes and builds the synthetic dataset of `config.synthetic`, unless built.

  Returns:
    `config` itself when `config.synthetic.enabled` is False; otherwise a copy
    whose unset `data_dir` is set to <workdir>/data, where the raw files
    (`synthetic_skeletons/` or `synthetic_coco17/`) and the built records go.
  """
  if not config.synthetic.enabled:
    return config
  fmt = config.synthetic.get('format', 'skeleton')
  if fmt not in FORMATS:
    raise models.ConfigError(f'synthetic.format={fmt!r} is not a synthetic data format; '
                             f'choose one of {FORMATS}')
  config = copy.deepcopy(config)
  if config.data_dir is None:
    config.data_dir = os.path.join(os.path.abspath(workdir), 'data')
  try:
    input_pipeline.open_dataset(config)
    return config  # already built
  except FileNotFoundError:
    pass
  if jax.process_index() == 0:
    from stbln_jax.data import build  # pylint: disable=g-import-not-at-top
    raw_dir = os.path.join(config.data_dir, _RAW_DIRS[fmt])
    start = time.perf_counter()
    what = _write_raw(config, fmt, raw_dir)
    logging.info('Wrote %s to %s in %.1f s.', what, raw_dir, time.perf_counter() - start)
    summary = build.build_dataset(config.dataset, manual_dir=raw_dir,
                                  data_dir=config.data_dir, quiet=True, **_BUILD_OPTIONS[fmt])
    logging.info('Built %s', summary.format())
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('synthetic dataset built')
  return config
