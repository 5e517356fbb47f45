r"""NTU RGB+D, joint stream, with the recipe of today's skeleton GCNs instead of the paper's.

  --config=configs/ntu_modern.py          (NTU-60 cross-subject)
  --config=configs/ntu_modern.py:cs120    (any benchmark of configs/default.py)

It follows CTR-GCN's NTU training (Uason-Chen/CTR-GCN, config/nturgbd-cross-subject/
default.yaml and feeders/tools.py) with PYSKL's cosine schedule and scaling:
- 64-frame inputs by crop-resize: a random crop of 50-100 % of the frames in
  training, the centre 95 % at test (CTR-GCN's window_size 64, p_interval [0.5, 1]
  and [0.95]);
- random rotation, angles in ±0.3 rad about x, y and z (CTR-GCN's `random_rot`
  default θ, PYSKL's `RandomRot(theta=0.3)`), and scaling by 1 + U(-0.1, 0.1) per
  axis (PYSKL's NTU 3D configs: `RandomScale(scale=0.1)`);
- SGD with Nesterov momentum, lr 0.1 at batch 64, weight decay 4e-4, 65 epochs, the
  first 5 a linear warm-up (CTR-GCN);
- cosine decay to 0 after the warm-up, per step (PYSKL: `CosineAnnealing`,
  min_lr=0, by_epoch=False), instead of CTR-GCN's steps at epochs 35 and 55;
- label smoothing 0.1 (InfoGCN's `LabelSmoothingCrossEntropy`; CTR-GCN and PYSKL
  use plain cross-entropy).
The network is the paper's (configs/default.py); only the training changes.
"""

from configs import default


def get_config(arg: str | None = None):
  config = default.get_config(arg or 'cs')
  config.num_frames = 64
  config.temporal_sampling = 'crop_resize'
  config.crop_interval = (0.5, 1.0)
  config.test_crop = 0.95
  config.augment.rotation = 0.3
  config.augment.scale = 0.1

  config.base_learning_rate = 0.1
  config.base_batch_size = 64
  config.weight_decay = 4e-4
  config.num_epochs = 65
  config.warmup_epochs = 5
  config.lr_schedule = 'cosine'
  config.label_smoothing = 0.1
  return config
