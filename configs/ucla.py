r"""NW-UCLA cross-view (train views 1 and 2, test view 3) with CTR-GCN's recipe.

  python -m data_prep.build nw_ucla --manual_dir=<folder with all_sqe/*.json>
  python -m stbln_jax.main --config=configs/ucla.py --workdir=/tmp/ucla          (GPU)
  python -m stbln_jax.main --config=configs/ucla.py:cpu --workdir=/tmp/ucla_cpu  (2 cores)
  python -m stbln_jax.main --config=configs/ucla.py:cpu,bone --workdir=...

The argument is '[cpu][,<stream>]': the streams are joint (the default), bone,
joint_motion and bone_motion, as in configs/default.py.

The recipe is CTR-GCN's for NW-UCLA (Uason-Chen/CTR-GCN, config/ucla/default.yaml
and feeders/feeder_ucla.py):
- per clip, the spine (joint 2, 0-based 1) of the first frame subtracted; in training
  rotations about x and y by whole degrees in ±60° and one scale U(0.5, 1.5); then each
  coordinate min-max normalised to [-1, 1] over the clip (which undoes the centring
  and the scale: only the rotation changes what the network sees);
- 52 frames: random frame indices, repeats allowed, sorted, in training; evenly spread
  ones, floor(linspace(0, T - 1, 52)), at test; the bones taken after normalisation;
- SGD with Nesterov momentum, lr 0.1 at batch 16, weight decay 1e-4, 5 warm-up epochs,
  lr ÷10 at epoch 50, 65 epochs, each of them every training clip 5 times.
The network of `get_config()` is the paper's released ST-BLN (configs/default.py) on
the 20 Kinect v1 joints and one person. `get_config('cpu')` is a lean ST-BLN of 0.85 M
parameters (channels 32-128, λ = 6) trained for 16 epochs (80 passes over the clips),
the first a warm-up, then a cosine decay to 0, with weight decay 5e-4 and label
smoothing 0.1: under 20 minutes on 2 CPU cores (docs/nw_ucla.md).
"""

import math

from configs import default

STREAMS = ('joint', 'bone', 'joint_motion', 'bone_motion')


def get_config(arg: str | None = None):
  parts = [p for p in (arg or '').split(',') if p]
  cpu = 'cpu' in parts
  streams = [p for p in parts if p != 'cpu']
  if len(streams) > 1 or (streams and streams[0] not in STREAMS):
    raise ValueError(f'configs/ucla.py:{arg}: expected [cpu][,<stream>] with a stream '
                     f'in {STREAMS}')
  config = default.get_config()
  config.dataset = 'nw_ucla/xview'
  config.stream = streams[0] if streams else 'joint'

  config.model.num_classes = 10
  config.model.layout = 'kinect20'
  config.model.num_persons = 1
  config.model.num_joints = 20
  config.model.in_channels = 3

  config.num_frames = 52
  config.temporal_sampling = 'random_sorted'
  config.center_joint = 1
  config.normalization = 'minmax'
  config.augment.rotation = math.radians(60)
  config.augment.rotation_axes = 'xy'
  config.augment.whole_degrees = True
  config.augment.isotropic_scale = 0.5
  config.repeat = 5

  config.batch_size = 16
  config.eval_batch_size = 64
  config.base_learning_rate = 0.1
  config.base_batch_size = 16
  config.momentum = 0.9
  config.nesterov = True
  config.weight_decay = 1e-4
  config.warmup_epochs = 5
  config.lr_schedule = 'step'
  config.lr_decay_epochs = (50,)
  config.lr_decay_factor = 0.1
  config.num_epochs = 65
  config.log_every_steps = 100
  if cpu:
    _cpu(config)
  return config


def _cpu(config):
  """A lean ST-BLN aggregating at λ = 6 and 80 passes over the clips, cosine to 0."""
  config.model.arch = 'lean'
  config.model.channels = (32, 32, 32, 32, 64, 64, 64, 128, 128, 128)
  config.model.strides = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
  config.model.num_layers = 10
  config.model.aggregate_at = 6
  config.num_epochs = 16  # of 5 passes each (repeat 5)
  config.warmup_epochs = 1
  config.lr_schedule = 'cosine'
  # 1e-4 gave 91.2 % after 90 passes; a short schedule on 1,020 clips needs more.
  config.weight_decay = 5e-4
  config.label_smoothing = 0.1
