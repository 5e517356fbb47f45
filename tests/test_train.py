"""The trainer and its parts: steps, device-count invariance, the recipe, config
checks, checkpoints, config files and the `main` command.

Step tests feed arrays directly (whole runs are in test_eval_predict.py). Compiled
steps are shared through module fixtures.
"""

import math
import os
import pathlib
import signal
import subprocess
import sys

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from ml_collections import config_flags

from configs import default
from configs import ucla
from stbln_jax import checkpoint
from stbln_jax import mixers
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import train

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / 'configs'
NUM_FRAMES = 12
BATCH = 8


def tiny_config(**model_overrides):
  config = default.get_config()
  config.model.channels = (8, 8)
  config.model.strides = (1, 1)
  config.model.num_layers = 2
  config.model.num_classes = 5
  config.model.update(model_overrides)
  config.num_frames = NUM_FRAMES
  config.batch_size = BATCH
  config.eval_batch_size = 4
  return config


def random_batch(seed=0, size=BATCH, num_classes=5):
  rng = np.random.default_rng(seed)
  return {'skeleton': rng.normal(size=(size, NUM_FRAMES, 2, 25, 3)).astype(np.float32),
          'label': rng.integers(0, num_classes, size).astype(np.int32)}


class Trainer:
  """A model, optimizer, initial state and jitted step on one mesh (compiled once)."""

  def __init__(self, config, mesh):
    self.config, self.mesh = config, mesh
    self.model = models.create_model(config.model)
    self.schedule = train.learning_rate_schedule(config, steps_per_epoch=10)
    self.optimizer = train.make_optimizer(config, self.schedule)
    self.initial = train.create_train_state(self.model, config, self.optimizer, mesh)
    self.step = train.make_train_step(self.model, self.optimizer, self.schedule, mesh)

  def fresh_state(self, mesh=None):
    """A copy of the initial state (the step donates its input), on `mesh`."""
    copy = jax.tree.map(jnp.copy, self.initial)
    return jax.device_put(copy, sharding.replicated(mesh or self.mesh))

  def run(self, batches, state=None, step=None, mesh=None):
    state = self.fresh_state() if state is None else state
    step, mesh = step or self.step, mesh or self.mesh
    losses = []
    for batch in batches:
      state, measurements = step(state, sharding.to_global(batch, mesh))
      losses.append(float(measurements['loss']))
    return state, losses


@pytest.fixture(scope='module')
def bilinear_trainer():
  assert jax.device_count() == 4, 'conftest.py should give JAX four CPU devices'
  return Trainer(tiny_config(mixer='bilinear'), sharding.make_mesh())


# ---- Steps ---------------------------------------------------------------------------

@pytest.mark.parametrize('mixer', mixers.MIXERS)
def test_one_train_step_for_each_mixer(mixer, bilinear_trainer):
  trainer = (bilinear_trainer if mixer == 'bilinear'
             else Trainer(tiny_config(mixer=mixer), sharding.make_mesh()))
  before = jax.device_get(trainer.initial['params'])
  state, losses = trainer.run([random_batch()])
  assert int(state['step']) == 1
  assert np.isfinite(losses[0]) and losses[0] > 0
  after = jax.device_get(state['params'])
  # The mixer's own node parameters (U, M or L) receive a gradient and move.
  name = {'bilinear': 'U', 'multiplicative': 'M', 'additive': 'M', 'symmetric': 'L'}[mixer]
  moved = before['layer_2']['mixer'][name] - after['layer_2']['mixer'][name]
  assert np.abs(moved).max() > 0
  # BatchNorm statistics were updated from the batch.
  stats = jax.device_get(state['batch_stats'])['data_bn']['mean']
  assert np.abs(stats).max() > 0


def test_loss_decreases_over_a_few_steps(bilinear_trainer):
  batch = random_batch(seed=1)
  _, losses = bilinear_trainer.run([batch] * 6)
  assert losses[-1] < losses[0] - 0.05, losses


def test_one_and_four_devices_give_the_same_two_steps(bilinear_trainer):
  batches = [random_batch(seed=2), random_batch(seed=3)]
  state4, losses4 = bilinear_trainer.run(batches)

  mesh1 = sharding.make_mesh(jax.devices()[:1])
  t = bilinear_trainer
  step1 = train.make_train_step(t.model, t.optimizer, t.schedule, mesh1)
  state1, losses1 = t.run(batches, state=t.fresh_state(mesh1), step=step1, mesh=mesh1)
  np.testing.assert_allclose(losses1, losses4, atol=1e-4)
  assert losses1[0] != losses1[1]  # the second step saw new parameters
  np.testing.assert_allclose(jax.device_get(state1['params']['head']['kernel']),
                             jax.device_get(state4['params']['head']['kernel']), atol=1e-4)


# ---- The recipe ----------------------------------------------------------------------

def test_learning_rate_scales_with_batch_and_drops_at_the_decay_epochs():
  config = default.get_config()
  config.batch_size = 128  # twice the base batch: twice the base rate
  schedule = train.learning_rate_schedule(config, steps_per_epoch=100)
  lr = lambda step: float(schedule(jnp.asarray(step)))
  assert lr(0) == pytest.approx(0.2)
  assert lr(2999) == pytest.approx(0.2)  # last step of epoch 30 (1-based)
  assert lr(3000) == pytest.approx(0.02)
  assert lr(3999) == pytest.approx(0.02)
  assert lr(4000) == pytest.approx(0.002)
  assert lr(4999) == pytest.approx(0.002)


def test_warmup_ramps_linearly_to_the_peak():
  config = default.get_config()
  config.warmup_epochs = 2
  schedule = train.learning_rate_schedule(config, steps_per_epoch=10)
  assert float(schedule(jnp.asarray(0))) == pytest.approx(0.1 / 20)
  assert float(schedule(jnp.asarray(9))) == pytest.approx(0.1 / 2)
  assert float(schedule(jnp.asarray(19))) == pytest.approx(0.1)
  assert float(schedule(jnp.asarray(25))) == pytest.approx(0.1)


def test_cosine_decays_to_zero_after_the_warmup():
  config = default.get_config()
  config.num_epochs, config.warmup_epochs, config.lr_schedule = 10, 2, 'cosine'
  schedule = train.learning_rate_schedule(config, steps_per_epoch=10)
  lr = lambda step: float(schedule(jnp.asarray(step)))
  assert lr(0) == pytest.approx(0.1 / 20)  # the warm-up ramp, as with steps
  assert lr(19) == pytest.approx(0.1)
  assert lr(20) == pytest.approx(0.1)  # the cosine starts at the peak
  assert lr(60) == pytest.approx(0.05)  # half way through the 80 cosine steps
  assert lr(40) == pytest.approx(0.05 * (1 + np.cos(np.pi / 4)))
  assert lr(100) == pytest.approx(0.0, abs=1e-9)
  rates = [lr(s) for s in range(20, 100)]
  assert all(a > b for a, b in zip(rates, rates[1:]))  # no step decays
  config.warmup_epochs = 0
  schedule = train.learning_rate_schedule(config, steps_per_epoch=10)
  assert float(schedule(jnp.asarray(0))) == pytest.approx(0.1)


def test_label_smoothing_is_infogcns_smoothed_cross_entropy():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 5)).astype(np.float32)
  labels = np.array([0, 1, 2, 3, 4, 0])
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -log_p[np.arange(6), labels]
  # (1 - ε)·NLL + ε·mean over classes of -log p (InfoGCN's LabelSmoothingCrossEntropy).
  expected = 0.9 * nll + 0.1 * -log_p.mean(-1)
  np.testing.assert_allclose(train.cross_entropy(jnp.asarray(logits), jnp.asarray(labels),
                                                 0.1), expected, rtol=1e-5)
  np.testing.assert_allclose(train.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                             nll, rtol=1e-5)


def test_optimizer_is_pytorch_sgd_with_nesterov_and_l2_decay():
  """Two steps of torch.optim.SGD(lr, momentum=0.9, nesterov=True, weight_decay=1e-4)."""
  config = default.get_config()
  optimizer = train.make_optimizer(config, lambda step: 0.1)
  p = {'w': jnp.asarray([1.0, -2.0])}
  grads = [jnp.asarray([0.5, 0.25]), jnp.asarray([-1.0, 2.0])]
  opt_state = optimizer.init(p)
  expected, buf = np.asarray([1.0, -2.0]), np.zeros(2)
  for g in grads:
    updates, opt_state = optimizer.update({'w': g}, opt_state, p)
    p = optax.apply_updates(p, updates)
    # PyTorch: d = g + wd·p; buf = μ·buf + d; d = d + μ·buf; p -= lr·d.
    d = np.asarray(g) + 1e-4 * expected
    buf = 0.9 * buf + d
    expected = expected - 0.1 * (d + 0.9 * buf)
  np.testing.assert_allclose(p['w'], expected, rtol=1e-6)


# ---- Config checks -------------------------------------------------------------------

@pytest.mark.parametrize('field,value,message', [
    ('batch_size', 6, 'multiple of the number of devices'),
    ('eval_batch_size', 10, 'multiple of the number of devices'),
    ('stream', 'velocity', 'is not a stream'),
    ('num_frames', 0, 'num_frames=0'),
    ('temporal_sampling', 'random', "temporal_sampling='random' is not a sampling"),
    ('crop_interval', (0.9, 0.5), r'crop_interval=\(0.9, 0.5\) must be two fractions'),
    ('crop_interval', (0.5,), r'crop_interval=\(0.5,\) must be two fractions'),
    ('test_crop', 1.5, 'test_crop=1.5 must be a fraction'),
    ('num_test_clips', 0, 'num_test_clips=0 must be at least 1'),
    ('num_test_clips', 10, "num_test_clips=10 needs temporal_sampling='uniform'"),
    ('lr_schedule', 'linear', "lr_schedule='linear' is not a schedule"),
    ('label_smoothing', 1.0, 'label_smoothing=1.0 must be in'),
    ('warmup_epochs', 50, 'warmup_epochs=50 must be in'),
    ('augment.rotation', -0.1, 'augment.rotation=-0.1 must be an angle'),
    ('augment.scale', 1.5, 'augment.scale=1.5 must be in'),
    ('augment.isotropic_scale', 1.0, 'augment.isotropic_scale=1.0 must be in'),
    ('augment.rotation_axes', 'yz', "augment.rotation_axes='yz' must be one of"),
    ('crop_min_frames', 0, 'crop_min_frames=0 must be at least 1'),
    ('center_joint', 25, 'center_joint=25 must be a joint of the 25'),
    ('normalization', 'zscore', "normalization='zscore' must be one of"),
    ('repeat', 0, 'repeat=0 must be a positive integer'),
])
def test_config_errors_say_what_to_change(field, value, message):
  config = tiny_config()
  *parents, name = field.split('.')
  node = config
  for parent in parents:
    node = node[parent]
  node[name] = value
  with pytest.raises(models.ConfigError, match=message) as error:
    train.validate_config(config, num_devices=4, num_processes=1)
  assert '\n' not in str(error.value)


def test_model_config_errors_are_checked_too():
  with pytest.raises(models.ConfigError, match='is not a mixer'):
    train.validate_config(tiny_config(mixer='attention'), num_devices=4, num_processes=1)
  with pytest.raises(models.ConfigError, match='aggregate_at'):
    train.validate_config(tiny_config(mixer='bilinear', aggregate_at=99), num_devices=4,
                          num_processes=1)


def test_sigterm_becomes_a_stop_request():
  previous = signal.getsignal(signal.SIGTERM)
  with train.StopRequest() as stop_requested:
    assert not stop_requested(1)
    signal.raise_signal(signal.SIGTERM)
    assert stop_requested(2)
  assert signal.getsignal(signal.SIGTERM) is previous


# ---- Checkpoints ---------------------------------------------------------------------

def test_checkpoints_keep_the_last_ones_and_the_best(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path), keep=2)
  state = {'step': jnp.zeros((), jnp.int32), 'params': {'w': jnp.arange(3.0)},
           'batch_stats': {'mean': jnp.ones(2)}, 'opt_state': ()}
  top1 = {1: 0.9, 2: 0.1, 3: 0.2, 4: None, 5: 0.4}  # None: saved without an evaluation
  for step, value in top1.items():
    state = {**state, 'step': jnp.asarray(step, jnp.int32),
             'params': {'w': state['params']['w'] + 1}}
    metrics = None if value is None else {'top1': value}
    progress = {'epoch': step, 'batch': 0, 'evaluations': []}
    assert checkpoint.save(manager, state, progress=progress, metrics=metrics)
  manager.wait_until_finished()
  assert not checkpoint.save(manager, state, progress=progress)  # step 5 exists already
  assert sorted(manager.all_steps()) == [1, 4, 5]
  assert manager.best_step() == 1

  abstract = checkpoint.abstract_like(state, sharding.replicated(sharding.make_mesh()))
  restored, progress, step = checkpoint.restore(manager, abstract, step=4)
  assert step == 4 and progress == {'epoch': 4, 'batch': 0, 'evaluations': []}
  np.testing.assert_array_equal(restored['params']['w'], np.arange(3.0) + 4)
  with pytest.raises(FileNotFoundError, match='available steps: \\[1, 4, 5\\]'):
    checkpoint.restore(manager, abstract, step=2)
  manager.close()

  # Variables alone, shaped by the checkpoint itself, onto another mesh (one device).
  one_device = sharding.replicated(sharding.make_mesh(jax.devices()[:1]))
  variables, progress, step = checkpoint.restore_variables(str(tmp_path), one_device)
  assert step == 5 and progress['epoch'] == 5
  assert set(variables) == {'params', 'batch_stats'}
  np.testing.assert_array_equal(variables['params']['w'], np.arange(3.0) + 5)
  assert variables['params']['w'].sharding == one_device


# ---- Configs and flags ---------------------------------------------------------------

@pytest.mark.parametrize('spec,dataset,stream,num_classes', [
    ('cv.py', 'ntu_rgbd/xview', 'joint', 60), ('cs.py', 'ntu_rgbd/xsub', 'joint', 60),
    ('cv_bone.py', 'ntu_rgbd/xview', 'bone', 60), ('cs_bone.py', 'ntu_rgbd/xsub', 'bone', 60),
    ('cs120.py', 'ntu_rgbd/xsub120', 'joint', 120),
    ('cset120.py', 'ntu_rgbd/xset120', 'joint', 120),
    ('default.py:cs120,bone_motion', 'ntu_rgbd/xsub120', 'bone_motion', 120),
    ('demo.py', 'ntu_rgbd/xview', 'joint', 60),
    ('ntu_modern.py', 'ntu_rgbd/xsub', 'joint', 60),
    ('ntu_modern.py:cs120', 'ntu_rgbd/xsub120', 'joint', 120),
    ('coco17.py', 'pose_annotations/coco17_2d', 'joint', None),  # the dataset's
    ('annotations.py', 'pose_annotations/custom_2d', 'joint', None),
    ('annotations.py:smoke', 'pose_annotations/custom_2d', 'joint', None),
    ('ucla.py', 'nw_ucla/xview', 'joint', 10),
    ('ucla.py:cpu', 'nw_ucla/xview', 'joint', 10),
    ('ucla.py:cpu,bone_motion', 'nw_ucla/xview', 'bone_motion', 10),
    ('ucla.py:joint_motion', 'nw_ucla/xview', 'joint_motion', 10)])
def test_config_files_load_validate_and_take_overrides(spec, dataset, stream, num_classes):
  def parse(*overrides):
    argv = ['main', f'--config={CONFIGS / spec}', *overrides]
    values = flags.FlagValues()
    # As main.py defines it; overrides are read from `sys_argv` (sys.argv in main).
    config_flags.DEFINE_config_file('config', None, flag_values=values, lock_config=True,
                                    sys_argv=argv)
    values(argv)
    return values.config

  config = parse()
  assert (config.dataset, config.stream, config.model.num_classes) == (
      dataset, stream, num_classes)
  train.validate_config(config, num_devices=4, num_processes=1)
  config = parse('--config.model.mixer=bilinear', '--config.model.aggregate_at=3',
                 '--config.stream=bone_motion')
  assert config.model.aggregate_at == 3 and config.stream == 'bone_motion'
  train.validate_config(config, num_devices=4, num_processes=1)


def test_the_paper_recipe_is_the_default_and_the_modern_one_changes_only_training():
  paper = default.get_config('cs')
  assert (paper.temporal_sampling, paper.num_test_clips, paper.lr_schedule) == (
      'pad', 1, 'step')
  assert (paper.augment.rotation, paper.augment.scale, paper.label_smoothing) == (0, 0, 0)
  assert paper.model.layout == 'ntu25'
  modern = train_config('ntu_modern.py')
  assert modern.model.to_dict() == paper.model.to_dict()
  assert (modern.temporal_sampling, modern.num_frames, modern.lr_schedule,
          modern.warmup_epochs, modern.label_smoothing) == ('crop_resize', 64, 'cosine', 5,
                                                            0.1)
  coco = train_config('coco17.py')
  # The dataset decides the classes, the layout and (M, V, C).
  assert all(coco.model[f] is None for f in models.DATASET_FIELDS)
  own = train_config('annotations.py')
  assert all(own.model[f] is None for f in models.DATASET_FIELDS)
  assert own.model.channels == paper.model.channels and own.model.strides is None
  assert models.strides_of(own.model) == (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
  assert (coco.train_split, coco.eval_split) == ('xsub_train', 'xsub_val')
  assert (coco.temporal_sampling, coco.num_frames, coco.num_test_clips) == (
      'uniform', 100, 10)


def test_the_ucla_configs_are_ctr_gcns_recipe_on_one_person_of_twenty_joints():
  gpu, cpu = train_config('ucla.py'), train_config('ucla.py:cpu')
  for config in (gpu, cpu):
    assert (config.model.layout, config.model.num_persons, config.model.num_joints,
            config.model.num_classes) == ('kinect20', 1, 20, 10)
    assert (config.num_frames, config.temporal_sampling, config.center_joint,
            config.normalization) == (52, 'random_sorted', 1, 'minmax')
    assert (config.augment.rotation_axes, config.augment.whole_degrees,
            config.augment.isotropic_scale) == ('xy', True, 0.5)
    assert round(math.degrees(config.augment.rotation)) == 60
  assert gpu.model.to_dict() == default.get_config().model.to_dict() | dict(
      num_classes=10, layout='kinect20', num_persons=1, num_joints=20)
  assert (gpu.batch_size, gpu.base_learning_rate, gpu.base_batch_size, gpu.nesterov,
          gpu.weight_decay, gpu.warmup_epochs, tuple(gpu.lr_decay_epochs), gpu.num_epochs,
          gpu.repeat) == (16, 0.1, 16, True, 1e-4, 5, (50,), 65, 5)
  with pytest.raises(ValueError, match=r'expected \[cpu\]\[,<stream>\]'):
    ucla.get_config('cpu,velocity')


def train_config(name):
  """The config of configs/<name>, as `main` loads it."""
  values = flags.FlagValues()
  argv = ['main', f'--config={CONFIGS / name}']
  config_flags.DEFINE_config_file('config', None, flag_values=values, lock_config=True,
                                  sys_argv=argv)
  values(argv)
  return values.config


def test_variants_are_the_default_recipe_with_their_own_dataset():
  cs120 = default.get_config('cs120')
  cv = default.get_config()
  assert cs120.dataset != cv.dataset
  for config in (cs120, cv):
    config.dataset, config.model.num_classes = None, None
  assert cs120.to_dict() == cv.to_dict()
  with pytest.raises(ValueError, match="unknown benchmark 'xview'"):
    default.get_config('xview')


@pytest.mark.parametrize('override,message', [
    ('--config.model.mixer=foo', "model.mixer='foo' is not a mixer"),
    ('--config.batch_size=0', 'batch_size=0 must be a positive multiple'),
])
def test_main_reports_a_config_error_as_one_line(override, message, tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'stbln_jax.main', f'--config={CONFIGS / "cv.py"}',
       f'--workdir={tmp_path}', override],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error: ') and message in lines[0], lines[0]
