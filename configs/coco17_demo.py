r"""The 2D demo: a small ST-BLN learns synthetic COCO-17 keypoints on a laptop CPU.

  python -m stbln_jax.main --config=configs/coco17_demo.py --workdir=/tmp/stbln_coco17

It writes the synthetic actions of configs/demo.py as a pose estimator would see
them (`stbln_jax.data.synthetic_keypoints`: 600 samples of 17 COCO keypoints in
1920×1080 pixels with scores, pixel noise and missed detections) into one
PYSKL/MMAction2 annotation pickle under <workdir>/data, builds it with the
`pose_annotations/coco17_2d` builder (x, y normalised by the image size, and the
score), trains the 4-layer lean ST-BLN of configs/demo.py (λ = 3) on cameras 2
and 3 and tests it on camera 1 (PYSKL's xview splits). Labels are the 10
synthetic classes (classes.txt).
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.dataset = 'pose_annotations/coco17_2d'
  config.train_split = 'xview_train'
  config.eval_split = 'xview_val'
  config.synthetic.format = 'coco17_pickle'

  config.model.layout = 'coco17'
  config.model.num_joints = 17
  config.model.in_channels = 3  # x, y, score
  # The labels are the synthetic classes 0..k-1 (k follows synthetic.num_classes).
  config.model.num_classes = config.synthetic.get_ref('num_classes')

  # Image coordinates are not centred on the body as the 3D demo's are, so the
  # network takes more steps to see past where each subject stands: batch 8 at
  # lr 0.05 for 60 epochs.
  config.batch_size = 8
  config.base_batch_size = 16  # lr 0.05 at batch 8
  config.num_epochs = 60
  config.lr_decay_epochs = (45, 54)
  config.eval_every_epochs = 20
  config.log_every_steps = 50  # once per epoch (400 training clips)
  return config
