"""The demo's data: synthetic NTU-format files, written and built once per workdir.

`configs/demo.py` sets `config.synthetic.enabled`; `prepare_data` then writes the
synthetic `.skeleton` files (`stbln_jax.data.synthetic`) and builds them with the
config's NTU builder, unless that dataset is already built.
"""

import copy
import os
import time

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections

from stbln_jax import input_pipeline


def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> ml_collections.ConfigDict:
  """Writes and builds the synthetic dataset of `config.synthetic`, unless built.

  Returns:
    `config` itself when `config.synthetic.enabled` is False; otherwise a copy
    whose unset `data_dir` is set to <workdir>/data, where the raw files
    (`synthetic_skeletons/`) and the built records go.
  """
  if not config.synthetic.enabled:
    return config
  config = copy.deepcopy(config)
  if config.data_dir is None:
    config.data_dir = os.path.join(os.path.abspath(workdir), 'data')
  try:
    input_pipeline.open_dataset(config)
    return config  # already built
  except FileNotFoundError:
    pass
  if jax.process_index() == 0:
    # Imported here: only the demo needs the generator and the builder.
    from stbln_jax.data import build  # pylint: disable=g-import-not-at-top
    from stbln_jax.data import synthetic  # pylint: disable=g-import-not-at-top
    raw_dir = os.path.join(config.data_dir, 'synthetic_skeletons')
    start = time.perf_counter()
    files = synthetic.write_synthetic_dataset(
        raw_dir, num_classes=config.synthetic.num_classes,
        subjects=tuple(range(1, config.synthetic.num_subjects + 1)),
        seed=config.synthetic.seed)
    logging.info('Wrote %d synthetic .skeleton files to %s in %.1f s.', len(files), raw_dir,
                 time.perf_counter() - start)
    summary = build.build_dataset(config.dataset, manual_dir=raw_dir,
                                  data_dir=config.data_dir, quiet=True)
    logging.info('Built %s', summary.format())
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('synthetic dataset built')
  return config
