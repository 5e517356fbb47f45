r"""Your own keypoints: the base config of a `pose_annotations` dataset.

  python -m data_prep.build pose_annotations/custom_2d --manual_dir=/data/mine --data_dir=/data/tfds
  python -m stbln_jax.main --config=configs/annotations.py --workdir=runs/mine \
      --config.dataset=pose_annotations/custom_2d --config.data_dir=/data/tfds

The dataset decides what it decides: the classes (its classes.txt), the skeleton layout
(its layout.json, or a registered one), the persons, joints and channels of a sample and
its records' preprocessing are read from the built dataset (`evaluate.fit_to_dataset`)
and saved with the run, so export, prediction and streaming agree with it. A field set on
the command line must agree with the dataset; every field that does not is named in one
line before training starts. Splits: the file's 'train' and 'test' (override
`train_split` and `eval_split` for other names).

The recipe is configs/ntu_modern.py's (64-frame crop-resize, rotation and scaling,
warm-up and cosine, label smoothing) on the paper's ST-BLN, batch 64 (at most the
training split's size: `--config.batch_size`). `get_config('smoke')` shrinks it to a
2-layer network on 16-frame clips for 2 epochs at batch 4, to check that data and config
fit in seconds:

  --config=configs/annotations.py:smoke
"""

from configs import default
from configs import ntu_modern


def get_config(arg: str | None = None):
  if arg not in (None, 'smoke'):
    raise ValueError(f"configs/annotations.py:{arg}: the argument is 'smoke' or nothing")
  config = default.dataset_decides(ntu_modern.get_config())
  config.dataset = 'pose_annotations/custom_2d'
  config.train_split = 'train'
  config.eval_split = 'test'
  if arg == 'smoke':
    config.model.channels = (8, 16)
    config.model.num_layers = 2
    config.num_frames = 16
    config.batch_size = config.eval_batch_size = config.base_batch_size = 4
    config.num_epochs = 2
    config.warmup_epochs = 0
    config.log_every_steps = 1
  return config
