"""Every configuration field, with the paper's recipe, for each NTU benchmark.

`get_config(arg)` takes '<benchmark>' or '<benchmark>,<stream>': the benchmarks are
cv (NTU-60 cross-view, the default), cs (NTU-60 cross-subject), cs120 (NTU-120
cross-subject) and cset120 (NTU-120 cross-setup); the streams joint (the default),
bone, joint_motion and bone_motion. The files `cv.py`, `cs_bone.py`, ... name one
each, and the command line can name any:

  --config=configs/cv.py
  --config=configs/default.py:cs120,bone_motion

Any field can then be overridden, e.g. `--config.model.aggregate_at=6`.
"""

import ml_collections
from ml_collections import config_dict

# benchmark -> (TFDS dataset, number of classes)
BENCHMARKS = {
    'cv': ('ntu_rgbd/xview', 60),
    'cs': ('ntu_rgbd/xsub', 60),
    'cs120': ('ntu_rgbd/xsub120', 120),
    'cset120': ('ntu_rgbd/xset120', 120),
}


def dataset_decides(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Unsets the model fields a built dataset decides: its classes, skeleton layout and
  (M, V, C) then come from the dataset (configs for one's own data)."""
  for name, kind in (('num_classes', int), ('layout', str), ('num_persons', int),
                     ('num_joints', int), ('in_channels', int)):
    config.model[name] = config_dict.placeholder(kind)
  return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  benchmark, _, stream = (arg or 'cv').partition(',')
  if benchmark not in BENCHMARKS:
    raise ValueError(f'configs/default.py:{arg}: unknown benchmark {benchmark!r}; '
                     f'choose one of {sorted(BENCHMARKS)}')
  stream = stream or 'joint'  # checked with the rest (train.validate_config)
  dataset, num_classes = BENCHMARKS[benchmark]

  config = ml_collections.ConfigDict()
  config.seed = 0

  # ---- Model (stbln_jax.models) -------------------------------------------
  model = config.model = ml_collections.ConfigDict()
  # 'multiplicative' (Eq. 1, ST-GCN), 'additive' (Eq. 2, 2s-AGCN),
  # 'symmetric' (Eq. 3) or 'bilinear' (Eq. 4, ST-BLN).
  model.mixer = 'bilinear'
  # 'released': the authors' released layers, which produced the paper's figures;
  # 'lean': the paper's text read literally (no biases, identity residuals, no C_k).
  model.arch = 'released'
  # The 2s-AGCN layer sizes; the network uses the first `num_layers` of them.
  model.channels = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256)
  # Temporal strides, one per layer. None: 2 where a layer after the first widens the
  # channels, 1 elsewhere, i.e. (1, 1, 1, 1, 2, 1, 1, 2, 1, 1) for the channels above; so
  # `--config.model.channels='(32,32,64,64)'` alone gives strides (1, 1, 2, 1).
  model.strides = config_dict.placeholder(tuple)
  model.num_layers = 10
  # λ: the layer (1-based) that aggregates the V joints into one node (Fig. 3-5).
  # None means no aggregation. Only the bilinear mixer can aggregate.
  model.aggregate_at = config_dict.placeholder(int)
  # Rank q of L in the symmetric mixer (None: q = V, full rank).
  model.symmetric_rank = config_dict.placeholder(int)
  model.temporal_kernel = 9
  # Â normalisation: 'mean' (2s-AGCN: every joint averages its neighbours in a partition)
  # or 'symmetric' (D_out^-1/2 A D_in^-1/2).
  model.adjacency_normalization = 'mean'
  # What the dataset decides (`models.DATASET_FIELDS`): the classes, the skeleton layout
  # (stbln_jax.data.layouts: Â of Eqs. (1)-(3) and the bone tree) and the input's
  # (M, V, C). These are NTU's; a field set to None takes the dataset's value
  # (configs/annotations.py unsets them all), and a set one must agree with it.
  model.num_classes = 60
  model.layout = 'ntu25'
  model.num_persons = 2
  model.num_joints = 25
  model.in_channels = 3
  # A layout file's layout ({'name', 'joints', 'bones', 'centre'}), copied from a
  # dataset built with one; None for a registered layout.
  model.custom_layout = None
  # Compute dtype: 'float32' or 'bfloat16' (parameters and BN statistics stay float32).
  model.dtype = 'float32'
  # Temporal convolution: 'auto' ('dft' on CPU, XLA's own convolution elsewhere), 'dft'
  # (a product per frequency, the transforms as matmuls) or 'xla'. Same numbers up to
  # float rounding, different speed (BENCHMARKS.md).
  model.temporal_conv = 'auto'

  # ---- Benchmark ------------------------------------------------------------
  config.model.num_classes = num_classes

  # ---- Data (stbln_jax.input_pipeline) ------------------------------------
  # TFDS name '<builder>/<config>': ntu_rgbd/xview, ntu_rgbd/xsub,
  # ntu_rgbd/xsub120, ntu_rgbd/xset120.
  config.dataset = dataset
  config.data_dir = config_dict.placeholder(str)  # None: TFDS default (~/tensorflow_datasets).
  # How the dataset's records were made (None: the dataset's, as training found it): an
  # NTU builder's '2s-agcn' or 'tracked', or a 3D annotation normalisation such as
  # 'centre=every_frame:SpineMid' (stbln_jax.data.annotations.Normalization). Prediction,
  # export and streaming prepare raw samples the same way.
  config.preprocessing = config_dict.placeholder(str)
  # 'joint', 'bone', 'joint_motion' or 'bone_motion'.
  config.stream = stream
  config.num_frames = 300  # frames of every model input
  # How a record's frames become num_frames: 'pad' (repeat-pad or cut: the paper's),
  # 'crop_resize' (CTR-GCN: a random crop of a fraction in crop_interval, at least
  # crop_min_frames, resized to num_frames; the centre test_crop at evaluation),
  # 'uniform' (PYSKL: one random frame per segment; num_test_clips fixed clips at
  # evaluation, their class probabilities averaged) or 'random_sorted' (CTR-GCN's
  # NW-UCLA: random frames, repeats allowed, in time order; evenly spread ones,
  # floor(linspace(0, T - 1, num_frames)), at evaluation).
  config.temporal_sampling = 'pad'
  config.crop_interval = (0.5, 1.0)
  config.crop_min_frames = 64
  config.test_crop = 0.95
  config.num_test_clips = 1  # an eval step then runs eval_batch_size × this many clips
  # Per clip, in training and evaluation, before the streams: subtract this joint
  # (0-based) of the first frame from every frame (None: off), then 'none' or
  # 'minmax' (each coordinate mapped onto [-1, 1] over the clip: CTR-GCN's NW-UCLA).
  config.center_joint = config_dict.placeholder(int)
  config.normalization = 'none'
  # Training augmentation on the host (stbln_jax.data.augment); 0 turns each off.
  config.augment = ml_collections.ConfigDict()
  config.augment.rotation = 0.0  # θ (radians): angles uniform in [-θ, θ] (2D: in-plane)
  config.augment.rotation_axes = 'xyz'  # 3D: 'xyz' (R = Rz·Ry·Rx) or 'xy' (Ry·Rx)
  config.augment.whole_degrees = False  # angles drawn as whole degrees in [-θ, θ]
  config.augment.scale = 0.0  # s: each coordinate axis times 1 + U(-s, s)
  config.augment.isotropic_scale = 0.0  # s: every coordinate times one 1 + U(-s, s)
  config.train_split = 'train'
  config.eval_split = 'test'
  # Each training example this many times per epoch (each copy augmented on its own);
  # epochs, and so the schedule's epochs, count these longer epochs.
  config.repeat = 1
  config.worker_count = 0  # grain worker processes (0: decode in the main process)

  # ---- Synthetic data (the demo; stbln_jax.data.synthetic) ----------------
  # With `enabled`, training first writes synthetic NTU-format .skeleton files
  # and builds `dataset` from them, unless it is already built; an unset
  # data_dir then means <workdir>/data.
  config.synthetic = ml_collections.ConfigDict()
  config.synthetic.enabled = False
  # 'skeleton' (NTU-format .skeleton files, built with `dataset`'s ntu_rgbd config) or
  # 'coco17_pickle' (a PYSKL-format pickle of 2D COCO-17 keypoints, built with
  # pose_annotations/coco17_2d).
  config.synthetic.format = 'skeleton'
  config.synthetic.num_classes = 10  # the first k synthetic actions (at most 12)
  config.synthetic.num_subjects = 10
  config.synthetic.seed = 0

  # ---- Training (stbln_jax.train; the paper's recipe) ---------------------
  config.batch_size = 64  # global batch, split over all devices
  config.eval_batch_size = 64
  config.num_epochs = 50
  config.base_learning_rate = 0.1  # per `base_batch_size` samples, scaled linearly
  config.base_batch_size = 64
  config.lr_decay_epochs = (30, 40)
  config.lr_decay_factor = 0.1
  config.momentum = 0.9
  config.nesterov = True
  config.weight_decay = 1e-4
  config.warmup_epochs = 0  # linear ramp to the peak rate over these epochs
  # 'step' (÷ 1/lr_decay_factor at lr_decay_epochs) or 'cosine' (from the peak to 0
  # over the epochs after the warm-up).
  config.lr_schedule = 'step'
  config.label_smoothing = 0.0  # ε: targets (1 - ε)·one-hot + ε/K

  # ---- Bookkeeping ---------------------------------------------------------
  config.log_every_steps = 50
  config.checkpoint_every_epochs = 1
  config.keep_checkpoints = 3
  config.eval_every_epochs = 1
  config.max_train_steps = config_dict.placeholder(int)  # stop early (smoke runs)
  return config
