r"""The demo: a small ST-BLN learns synthetic NTU-format skeletons on a laptop CPU.

  python -m stbln_jax.main --config=configs/demo.py --workdir=/tmp/stbln_demo

It writes 600 synthetic `.skeleton` files (10 actions × 10 subjects × 3 cameras ×
2 replications, `stbln_jax.data.synthetic`) under <workdir>/data, builds them with
the `ntu_rgbd/xview` builder (train on cameras 2 and 3, test on camera 1), trains a
4-layer lean ST-BLN on 64-frame clips for 16 epochs and evaluates it on the unseen
camera (about a minute on 2 CPU cores). The actions differ by how they unfold,
not by a held pose, so a clip holds nearly the whole action and the model must
learn the motion to recognise the new view. Layer 3 aggregates the 25 joints into
one node (λ = 3, Fig. 3 of the paper), which halves the step time on a CPU. Labels
keep NTU's 60-class space (the files carry NTU action ids).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = 'ntu_rgbd/xview'
  config.synthetic.enabled = True

  config.model.arch = 'lean'  # the paper's text read literally (stbln_jax/models.py)
  config.model.mixer = 'bilinear'
  config.model.channels = (16, 16, 32, 32)
  config.model.strides = (1, 1, 2, 1)
  config.model.num_layers = 4
  config.model.aggregate_at = 3
  config.model.num_classes = 60

  # The synthetic clips are 40-80 frames long and classes differ in how the
  # whole action unfolds, so a clip must hold most of it.
  config.num_frames = 64
  config.batch_size = 16
  config.eval_batch_size = 40
  config.base_batch_size = 16  # lr 0.1 at batch 16
  config.num_epochs = 16
  config.lr_decay_epochs = (11, 14)
  config.eval_every_epochs = 8
  config.log_every_steps = 24  # once per epoch (397 training clips)
  return config
