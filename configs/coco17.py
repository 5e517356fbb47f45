r"""NTU RGB+D 60 cross-subject from 2D COCO-17 keypoints (x, y, score), PYSKL-style.

  python -m data_prep.build pose_annotations/coco17_2d --manual_dir=DIR --max_persons=2
  python -m stbln_jax.main --config=configs/coco17.py --workdir=...

DIR holds PYSKL's ntu60_hrnet.pkl (HRNet keypoints of every NTU-60 video), whose splits
'xsub_train' and 'xsub_val' are NTU-60's cross-subject ones; PYSKL keeps the two persons
of highest score, as `--max_persons=2` does. The builder normalises x and y to [-1, 1] by
the image size and keeps the detector's score as the third channel; the dataset decides
the model's classes (60), layout ('coco17') and (M, V, C) = (2, 17, 3)
(`default.dataset_decides`). Rotation and scaling leave the score alone.

The recipe is configs/ntu_modern.py's with PYSKL's 2D sampling and schedule
(configs/stgcn++/stgcn++_ntu60_xsub_hrnet/j.py): `UniformSample(clip_len=100)` in
training and 10 test clips whose class probabilities are averaged, weight decay 5e-4,
80 epochs (PYSKL's 16 epochs of the training set repeated 5 times), cosine to 0. The
rotation is in the image plane.
"""

from configs import default
from configs import ntu_modern


def get_config():
  config = default.dataset_decides(ntu_modern.get_config('cs'))
  config.dataset = 'pose_annotations/coco17_2d'
  config.train_split = 'xsub_train'
  config.eval_split = 'xsub_val'

  config.num_frames = 100
  config.temporal_sampling = 'uniform'
  config.num_test_clips = 10
  config.weight_decay = 5e-4
  config.num_epochs = 80
  return config
