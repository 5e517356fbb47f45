"""Whole runs on a tiny built dataset: evaluation and its reports, resuming,
prediction and fusion.

The dataset (built once per module) is 12 synthetic files plus five real NTU files
through the `ntu_rgbd/xview` builder: 7 test examples (camera 1) and 10 training
examples. Every run here uses one recipe, so the jitted steps are compiled once and
shared between runs.
"""

import io
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import ensemble
from stbln_jax import evaluate
from stbln_jax import input_pipeline
from stbln_jax import models
from stbln_jax import predict
from stbln_jax import sharding
from stbln_jax import train
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import build
from stbln_jax.data import synthetic

REAL_FILES = ('S001C001P001R001A011', 'S002C001P003R001A003', 'S003C001P015R001A034',
              'S001C003P008R002A058', 'S004C002P003R001A017',
              'S001C002P006R001A008')  # the last is on the missing-skeleton list
NUM_TEST = 7  # 4 synthetic + 3 real files from camera 1


@pytest.fixture(scope='module')
def data_dir(tmp_path_factory, ntu_samples_dir):
  raw = tmp_path_factory.mktemp('raw')
  synthetic.write_synthetic_dataset(raw, num_classes=2, subjects=(1, 2), replications=(1,),
                                    frames=(20, 30))
  for name in REAL_FILES:
    shutil.copy(ntu_samples_dir / f'{name}.skeleton', raw)
  out = tmp_path_factory.mktemp('tfds')
  summary = build.build_dataset('ntu_rgbd/xview', manual_dir=raw, data_dir=out,
                                num_workers=1, quiet=True)
  assert summary.examples == {'train': 10, 'test': NUM_TEST}, summary.format()
  return str(out)


def run_config(data_dir, **overrides):
  config = default.get_config()
  config.data_dir = data_dir
  config.model.channels = (8, 8)
  config.model.strides = (1, 1)
  config.model.num_layers = 2
  config.num_frames = 12
  config.batch_size = 4  # 2 steps per epoch (10 examples, remainder dropped)
  config.eval_batch_size = 4  # 7 test examples: the second batch is padded
  config.num_epochs = 2
  config.log_every_steps = 1
  config.update(overrides)
  return config


@pytest.fixture(scope='module', autouse=True)
def compile_once():
  """Memoises the step builders by (model, mesh): every run has the same recipe."""
  patch = pytest.MonkeyPatch()
  for module, name in ((train, 'make_train_step'), (evaluate, 'make_eval_step')):
    original, cache = getattr(module, name), {}

    def cached(model, *args, _original=original, _cache=cache, **kwargs):
      key = (model, args[-1], *sorted(kwargs.items()))  # the mesh is the last argument
      if key not in _cache:
        _cache[key] = _original(model, *args, **kwargs)
      return _cache[key]
    patch.setattr(module, name, cached)
  yield
  patch.undo()


@pytest.fixture(scope='module')
def trained(data_dir, tmp_path_factory):
  """An uninterrupted two-epoch run: (workdir, config, final summary, final state)."""
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  config = run_config(data_dir)
  summary = train.train_and_evaluate(config, workdir)
  with np.load(pathlib.Path(workdir) / 'scores_test.npz') as f:
    scores = {k: f[k] for k in f.files}
  return workdir, config, summary, scores


def latest_checkpoint(workdir):
  """(variables on the host, progress, step) of the workdir's latest checkpoint."""
  variables, progress, step = checkpoint.restore_variables(
      workdir, sharding.replicated(sharding.make_mesh()))
  return jax.device_get(variables), progress, step


def final_params(workdir):
  variables, _, step = latest_checkpoint(workdir)
  return variables, step


def read_report(workdir, split='test'):
  with open(pathlib.Path(workdir) / f'eval_{split}.json') as f:
    return json.load(f)


# ---- Evaluation ----------------------------------------------------------------------

def test_evaluation_counts_every_example_once(trained, data_dir):
  workdir, config, summary, scores = trained
  assert summary['num_examples'] == NUM_TEST
  assert np.asarray(summary['confusion_matrix']).sum() == NUM_TEST
  assert len(summary['per_class_accuracy']) == 60
  assert 0.0 <= summary['top1'] <= summary['top5'] <= 1.0
  # Mean class accuracy: the mean recall over the classes of the test split.
  labels, predictions = scores['labels'], scores['logits'].argmax(-1)
  recalls = [np.mean(predictions[labels == c] == c) for c in np.unique(labels)]
  assert summary['mean_class_accuracy'] == pytest.approx(np.mean(recalls))
  assert all(set(e) == set(evaluate.EVALUATION_KEYS)
             for e in read_report(workdir)['evaluations'])
  # Scores are per sample, in split order, with the sample names for fusion.
  dataset = input_pipeline.open_dataset(config)
  assert list(scores['names']) == dataset.sample_names('test')
  assert scores['logits'].shape == (NUM_TEST, 60)
  for name in ('eval_test.json', 'confusion_test.png', 'config.json', 'class_names.json'):
    assert (pathlib.Path(workdir) / name).is_file(), name


def test_report_gives_the_best_epoch_and_the_final_one(trained):
  workdir, _, summary, _ = trained
  report = read_report(workdir)
  # One evaluation per epoch; the final checkpoint's is the last.
  evaluations = report['evaluations']
  assert [(e['epoch'], e['step']) for e in evaluations] == [(1, 2), (2, 4)]
  assert (report['epoch'], report['step']) == (2, 4)
  assert report['top1'] == evaluations[-1]['top1'] == summary['top1']
  best = max(evaluations, key=lambda e: e['top1'])
  assert report['best_epoch'] == best
  line = evaluate.describe(summary)
  assert line.startswith(f'top-1 {100 * summary["top1"]:.2f}% on the {NUM_TEST} examples')
  assert f"best of the run's 2 evaluations: top-1 {100 * best['top1']:.2f}% at epoch" in line


class ClipModel:
  """A stand-in network: logits = a fixed linear map of the mean input (no compile)."""

  def __init__(self, num_classes=4, seed=0):
    self.weights = np.random.default_rng(seed).normal(size=(3, num_classes)) * 3

  def apply(self, variables, x, train):
    del variables, train
    return jnp.mean(x, axis=(1, 2, 3)) @ self.weights


def test_multi_clip_evaluation_averages_the_clips_probabilities():
  rng = np.random.default_rng(0)
  skeleton = rng.normal(size=(3, 5, 4, 2, 6, 3)).astype(np.float32)  # B=3, K=5 clips
  batch = {'skeleton': skeleton, 'label': np.array([0, 2, 3], np.int32),
           'mask': np.array([True, True, False]), 'index': np.array([0, 1, -1], np.int32),
           'name': np.zeros((3, input_pipeline.NAME_BYTES), np.uint8)}
  model = ClipModel()
  out = jax.device_get(evaluate.eval_step({}, batch, model=model))

  # Directly: each clip's softmax, averaged over the clips of a sample.
  clip_logits = np.asarray(skeleton.mean(axis=(2, 3, 4)) @ model.weights)  # (B, K, 4)
  e = np.exp(clip_logits - clip_logits.max(-1, keepdims=True))
  mean_probs = (e / e.sum(-1, keepdims=True)).mean(axis=1)
  np.testing.assert_allclose(out['logits'], np.log(mean_probs), rtol=1e-5, atol=1e-5)
  real = batch['mask']
  loss = -np.log(mean_probs[np.arange(3), batch['label']])
  assert out['loss_sum'] == pytest.approx(loss[real].sum(), rel=1e-5)
  top1 = mean_probs.argmax(-1) == batch['label']
  assert out['top1_correct'] == top1[real].sum() and out['count'] == 2
  # Not the mean of the logits: the two averages disagree on these clips.
  assert not np.allclose(np.log(mean_probs), jax.nn.log_softmax(clip_logits.mean(1)),
                         atol=1e-3)


def test_best_evaluation_is_the_highest_top1_and_the_earliest_of_ties():
  evaluations = [{'epoch': 1, 'top1': 0.5}, {'epoch': 2, 'top1': 0.7},
                 {'epoch': 3, 'top1': 0.7}, {'epoch': 4, 'top1': 0.6}]
  assert evaluate.best_evaluation(evaluations)['epoch'] == 2
  assert evaluate.best_evaluation([]) is None


def test_save_restore_evaluate_gives_identical_metrics(trained):
  workdir, config, summary, scores = trained
  restored = evaluate.evaluate(workdir_lib.load_config(workdir), workdir)
  for key in ('num_examples', 'top1', 'top5', 'loss', 'confusion_matrix', 'step', 'epoch',
              'best_epoch', 'evaluations'):
    assert restored[key] == summary[key], key
  with np.load(pathlib.Path(workdir) / 'scores_test.npz') as f:
    np.testing.assert_array_equal(f['logits'], scores['logits'])
    np.testing.assert_array_equal(f['labels'], scores['labels'])


def test_the_best_checkpoint_is_the_best_evaluations(trained, tmp_path, ntu_samples_dir):
  workdir, config, summary, _ = trained
  best = summary['best_epoch']
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  manager = checkpoint.make_manager(str(copy), create=False)
  assert checkpoint.chosen_step(manager, 'best') == best['step']
  assert checkpoint.chosen_step(manager, str(best['step'])) == best['step']
  with pytest.raises(checkpoint.CheckpointError, match="'last' is neither a step number "
                                                       "nor 'best'"):
    checkpoint.chosen_step(manager, 'last')
  manager.close()
  report = evaluate.evaluate(config, str(copy), checkpoint_step='best')
  assert report['step'] == best['step'] and report['top1'] == pytest.approx(best['top1'])
  out = io.StringIO()
  predict.run(str(copy), [str(ntu_samples_dir / f'{REAL_FILES[0]}.skeleton')],
              checkpoint_step='best', out=out)
  assert f'(step {best["step"]}, joint stream)' in out.getvalue()


def test_checkpoints_without_evaluations_have_no_best(tmp_path):
  manager = checkpoint.make_manager(str(tmp_path))
  checkpoint.save(manager, {'step': np.int32(7), 'params': {'w': np.ones(2)}},
                  progress={'epoch': 1, 'batch': 0, 'evaluations': []})
  manager.wait_until_finished()
  with pytest.raises(checkpoint.CheckpointError, match=r'was saved with an evaluation, so '
                                                       r'none is the best; name a step '
                                                       r'\(available: \[7\]\)'):
    checkpoint.chosen_step(manager, 'best')
  manager.close()


def test_saved_config_round_trips(trained):
  workdir, config, _, _ = trained
  loaded = workdir_lib.load_config(workdir)
  assert loaded.model.channels == list(config.model.channels)
  assert loaded.data_dir == config.data_dir and loaded.stream == config.stream


# ---- Resuming ------------------------------------------------------------------------

def test_stopped_and_resumed_runs_end_with_the_same_parameters(
    trained, data_dir, tmp_path, monkeypatch):
  workdir_a, _, _, _ = trained
  expected, expected_step = final_params(workdir_a)
  workdir = str(tmp_path)
  original = input_pipeline.train_batches

  def sigterm_during(stop_epoch, stop_batch):
    """train_batches, raising SIGTERM while that batch is running."""
    def interrupted(config, *, epoch, start_batch=0, **kwargs):
      for i, batch in enumerate(original(config, epoch=epoch, start_batch=start_batch,
                                         **kwargs)):
        if (epoch, start_batch + i) == (stop_epoch, stop_batch):
          signal.raise_signal(signal.SIGTERM)
        yield batch
    return interrupted

  # 1. SIGTERM in the last batch of epoch 1: saved at its end, not evaluated.
  monkeypatch.setattr(input_pipeline, 'train_batches', sigterm_during(0, 1))
  assert train.train_and_evaluate(run_config(data_dir), workdir) == {}
  _, progress, step = latest_checkpoint(workdir)
  assert step == 2 and progress['evaluations'] == []

  # 2. Resume (evaluating epoch 1 first); SIGTERM in the first batch of epoch 2.
  monkeypatch.setattr(input_pipeline, 'train_batches', sigterm_during(1, 0))
  assert train.train_and_evaluate(run_config(data_dir), workdir) == {}
  _, progress, step = latest_checkpoint(workdir)
  assert step == 3  # saved mid-epoch, after the batch that was running
  assert [e['step'] for e in progress['evaluations']] == [2]

  # 3. Resume from the middle of epoch 2 and finish.
  monkeypatch.setattr(input_pipeline, 'train_batches', original)
  train.train_and_evaluate(run_config(data_dir), workdir)
  resumed, step = final_params(workdir)
  assert step == expected_step == 4
  jax.tree.map(np.testing.assert_array_equal, resumed, expected)
  # The same evaluations, so the same best epoch.
  assert read_report(workdir)['evaluations'] == read_report(workdir_a)['evaluations']


def test_resuming_with_another_batch_size_says_what_to_change(trained, data_dir, tmp_path):
  workdir, _, _, _ = trained
  shutil.copytree(pathlib.Path(workdir) / 'checkpoints', tmp_path / 'checkpoints')
  with pytest.raises(models.ConfigError, match='resume with the config the run started'):
    train.train_and_evaluate(run_config(data_dir, batch_size=8), str(tmp_path))


# ---- Prediction ----------------------------------------------------------------------

def test_predict_prints_five_named_actions_and_reports_bad_files(trained, ntu_samples_dir):
  workdir, _, _, _ = trained
  good = str(ntu_samples_dir / 'S001C001P001R001A011.skeleton')
  empty = str(ntu_samples_dir / 'S001C002P006R001A008.skeleton')  # no body at all
  out, err = io.StringIO(), io.StringIO()
  failed = predict.run(workdir, [empty, good, '/no/such/file.skeleton'], out=out, err=err)

  assert failed == 2
  assert empty in err.getvalue() and '/no/such/file.skeleton' in err.getvalue()
  lines = out.getvalue().splitlines()
  assert lines[0].startswith(good)
  ranked = [re.fullmatch(r'\s+(\d)\. (.+?)\s+([01]\.\d{4})', line) for line in lines[1:]]
  assert len(ranked) == 5 and all(ranked), lines
  names = workdir_lib.load_class_names(workdir)
  assert [int(m.group(1)) for m in ranked] == [1, 2, 3, 4, 5]
  assert all(m.group(2) in names for m in ranked)
  probabilities = [float(m.group(3)) for m in ranked]
  assert probabilities == sorted(probabilities, reverse=True)
  assert 0.0 < sum(probabilities) <= 1.0 + 1e-4


def test_predict_uses_the_builders_preprocessing(trained, ntu_samples_dir):
  """A raw test file gives the same logits as its built record in evaluation."""
  workdir, config, _, scores = trained
  name = 'S002C001P003R001A003'
  inputs, good, errors = predict.load_inputs(
      [str(ntu_samples_dir / f'{name}.skeleton')], config)
  assert not errors and inputs.shape == (1, config.num_frames, 2, 25, 3)
  variables, _ = final_params(workdir)
  model = models.create_model(config.model)
  logits = model.apply(variables, jnp.asarray(inputs), train=False)
  row = list(scores['names']).index(name)
  np.testing.assert_allclose(np.asarray(logits)[0], scores['logits'][row], atol=1e-4)


# ---- Fusion --------------------------------------------------------------------------

def test_ensemble_matches_samples_by_name_and_weights_softmax_scores(trained, tmp_path):
  workdir, _, summary, scores = trained
  # A second "stream": the same samples in reverse order with other logits.
  rng = np.random.default_rng(0)
  other_logits = rng.normal(size=scores['logits'].shape).astype(np.float32)
  other = tmp_path / 'bone'
  other.mkdir()
  np.savez(other / 'scores_test.npz', names=scores['names'][::-1],
           labels=scores['labels'][::-1], logits=other_logits[::-1])

  report = ensemble.fuse([workdir, str(other)], [2.0, 1.0])
  assert report['num_examples'] == NUM_TEST
  assert report['streams'][0]['top1'] == pytest.approx(summary['top1'])

  def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
  fused = 2.0 * softmax(scores['logits']) + softmax(other_logits)
  expected = np.mean(fused.argmax(-1) == scores['labels'])
  assert report['fused']['top1'] == pytest.approx(expected)
  assert 'fused' in ensemble.format_report(report)


def test_ensemble_refuses_different_sample_sets(trained, tmp_path):
  workdir, _, _, scores = trained
  np.savez(tmp_path / 'scores_test.npz', names=scores['names'][:-1],
           labels=scores['labels'][:-1], logits=scores['logits'][:-1])
  with pytest.raises(ValueError, match='same split'):
    ensemble.fuse([workdir, str(tmp_path)])


def test_ensemble_command_reports_a_missing_workdir_as_one_line(tmp_path):
  def run(*flags):
    return subprocess.run(
        [sys.executable, '-m', 'stbln_jax.ensemble', f'--workdirs={tmp_path}', *flags],
        cwd=pathlib.Path(__file__).resolve().parents[1], capture_output=True, text=True,
        timeout=120, env={**os.environ, 'JAX_PLATFORMS': 'cpu'})
  result = run()
  assert result.returncode == 2
  assert result.stderr.strip() == (
      f"error: {tmp_path}/config.json not found: is '{tmp_path}' the --workdir of a "
      f'training run?')
  result = run('--split=test')
  assert result.returncode == 2
  assert result.stderr.strip() == (
      f'error: {tmp_path}/scores_test.npz not found; evaluate it first: python -m '
      f'stbln_jax.main --mode=eval --workdir={tmp_path} --split=test')


def test_ensemble_fuses_the_runs_evaluation_split(trained, tmp_path):
  workdir, _, summary, scores = trained
  run = tmp_path / 'run'
  run.mkdir()
  config = workdir_lib.load_config(workdir)
  config.eval_split = 'xsub_val'
  workdir_lib.save_config(config, str(run))
  np.savez(run / 'scores_xsub_val.npz', **scores)
  report = ensemble.fuse([str(run)])
  assert report['split'] == 'xsub_val' and report['num_examples'] == NUM_TEST
  assert report['fused']['top1'] == pytest.approx(summary['top1'])
  with pytest.raises(cli.InputError, match=r'scores_test\.npz not found; it has scores '
                                           r'of xsub_val \(--split\)'):
    ensemble.fuse([str(run)], split='test')


def test_predict_uses_the_preprocessing_its_dataset_was_built_with():
  assert build.preprocessing_of('ntu_rgbd/xview') == '2s-agcn'
  assert build.preprocessing_of('ntu_rgbd/xsub120_tracked') == 'tracked'
  assert build.preprocessing_of('ntu_rgbd/xset120:2.0.0') == '2s-agcn'
  assert build.preprocessing_of('pose_annotations/coco17_2d') is None
  assert build.channels_of('pose_annotations/coco17_2d') == 'xys'
  assert build.channels_of('pose_annotations/openpose18_2d_xy') == 'xy'
  assert build.channels_of('ntu_rgbd/xview') == 'xyz'
  with pytest.raises(ValueError, match='is not an ntu_rgbd, pose_annotations or nw_ucla'):
    build.builder_config('mnist/x')
