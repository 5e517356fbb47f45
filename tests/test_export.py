"""Exported networks: the same logits as the Flax model with the BNs folded, a loader
without the training stack, and clear errors for broken exports.

The workdir is written directly (config, class names, one checkpoint of perturbed
initial variables), so no training step is compiled.
"""

import collections
import json
import os
import re
import shutil
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from stbln_jax import checkpoint
from stbln_jax import cli
from stbln_jax import export
from stbln_jax import models
from stbln_jax import ops
from stbln_jax import predict
from stbln_jax import serving
from stbln_jax import workdir as workdir_lib
from stbln_jax.data import layouts


def tiny_config(**model):
  config = default.get_config()
  config.model.channels = (8, 16)
  config.model.strides = (1, 2)
  config.model.num_layers = 2
  config.num_frames = 12
  config.model.update(model)
  return config


def write_workdir(path, config, seed=0):
  """A workdir whose latest checkpoint holds random variables (BN statistics included)."""
  model = models.create_model(config.model)
  variables = jax.device_get(models.init_variables(model, config.model, jax.random.key(seed)))
  rng = np.random.default_rng(seed)

  def perturb(x):
    return (x + rng.normal(0, 0.3, x.shape)).astype(x.dtype)
  params = jax.tree.map(perturb, variables['params'])
  stats = jax.tree.map(lambda x: np.abs(perturb(x)) + 0.5, variables['batch_stats'])
  workdir_lib.save_config(config, str(path))
  workdir_lib.save_class_names([f'action {i}' for i in range(config.model.num_classes)],
                               str(path))
  manager = checkpoint.make_manager(str(path))
  checkpoint.save(manager, {'step': np.int32(7), 'params': params, 'batch_stats': stats,
                            'opt_state': {}}, progress={'epoch': 1, 'batch': 0,
                                                        'evaluations': []})
  manager.wait_until_finished()
  manager.close()
  return {'params': params, 'batch_stats': stats}


@pytest.fixture(scope='module')
def symbolic_export(tmp_path_factory):
  """A released bilinear network aggregating at λ = 2, exported with symbolic N and T."""
  root = tmp_path_factory.mktemp('export')
  config = tiny_config(aggregate_at=2)
  variables = write_workdir(root / 'run', config)
  output = str(root / 'model.stablehlo')
  meta = export.export_run(str(root / 'run'), output)
  return config, variables, output, meta


def test_symbolic_export_gives_the_flax_logits_for_any_batch_and_length(symbolic_export):
  config, variables, output, meta = symbolic_export
  assert meta['input_shape'] == ['N', 'T', 2, 25, 3] and meta['step'] == 7
  assert meta['preprocessing'] == '2s-agcn' and meta['stream'] == 'joint'
  assert (meta['layout'], meta['channels']) == ('ntu25', 'xyz')
  # Every BN after a map is folded: spatial, temporal and Residual/V in both layers,
  # Residual/T in layer 2.
  assert len(meta['model']['folded_batch_norms']) == 7
  assert 'layer_2/residual_t/bn' in meta['model']['folded_batch_norms']
  loaded = serving.load(output)
  model = models.create_model(config.model).clone(temporal_conv='xla')
  rng = np.random.default_rng(1)
  for n, t in ((1, 9), (3, 16)):
    x = rng.normal(size=(n, t, 2, 25, 3)).astype(np.float32)
    expected = np.asarray(model.apply(variables, jnp.asarray(x), train=False))
    np.testing.assert_allclose(loaded(x), expected, atol=1e-5, rtol=1e-5)
  (ranked,) = loaded.top_k(expected[:1], 3)
  assert [name for name, _ in ranked][0] == f'action {int(np.argmax(expected[0]))}'


def test_fixed_export_folds_symmetric_to_additive_and_skips_an_absent_person(tmp_path):
  config = tiny_config(mixer='symmetric', arch='lean', strides=(1, 1))
  variables = write_workdir(tmp_path / 'run', config, seed=2)
  output = str(tmp_path / 'model.stablehlo')
  meta = export.export_run(str(tmp_path / 'run'), output, batch_size=2, num_frames=10)
  assert meta['model']['exported_as'] == 'additive'
  assert meta['input_shape'] == [2, 10, 2, 25, 3]
  x = np.random.default_rng(3).normal(size=(2, 10, 2, 25, 3)).astype(np.float32)
  expected = models.create_model(config.model).apply(variables, jnp.asarray(x), train=False)
  loaded = serving.load(output)
  np.testing.assert_allclose(loaded(x), expected, atol=1e-5, rtol=1e-5)
  # Nobody as the second person: the single-person path, same logits.
  assert meta['model']['single_person_path']
  x[:, :, 1] = 0
  expected = models.create_model(config.model).apply(variables, jnp.asarray(x), train=False)
  np.testing.assert_allclose(loaded(x), expected, atol=1e-5, rtol=1e-5)
  with pytest.raises(serving.ExportError, match=r'model\.stablehlo: input of shape'):
    loaded(x[:1])


@pytest.mark.parametrize('sampling,stream,clips', [
    ('pad', 'joint', 1), ('crop_resize', 'bone', 1), ('uniform', 'bone_motion', 3)])
def test_prepare_and_classify_are_what_predict_does(symbolic_export, sampling, stream, clips):
  config, variables, output, _ = symbolic_export
  config = config.copy_and_resolve_references()
  config.update(temporal_sampling=sampling, stream=stream, num_test_clips=clips)
  loaded = serving.load(output)
  # The sidecar of the same network exported from this run's config.
  loaded.meta.update(stream=stream, temporal_sampling=sampling, num_test_clips=clips)
  rng = np.random.default_rng(5)
  records = [rng.normal(size=(t, 2, 25, 3)).astype(np.float32) for t in (7, 40)]
  inputs, _, _ = predict.inputs_of([(str(i), r, None) for i, r in enumerate(records)],
                                   config)
  model = models.create_model(config.model).clone(temporal_conv='xla')
  probabilities = predict._probabilities(model, variables, inputs)  # pylint: disable=protected-access
  for record, x, p in zip(records, inputs, probabilities):
    prepared = loaded.prepare(record)
    assert prepared.shape == (clips, config.num_frames, 2, 25, 3)
    np.testing.assert_allclose(prepared, x if clips > 1 else x[None], atol=1e-6)
    top = loaded.classify(record, 3)
    assert [name for name, _ in top] == [f'action {c}' for c in np.argsort(-p)[:3]]
    np.testing.assert_allclose([q for _, q in top], np.sort(p)[::-1][:3], atol=1e-5)
  with pytest.raises(serving.ExportError, match=r'a record of shape \(7, 1, 25, 3\)'):
    loaded.prepare(records[0][:, :1])


def test_a_failing_export_option_writes_nothing(symbolic_export, tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, 'tensorflow', None)  # as if not installed
  output = tmp_path / 'm.stablehlo'
  run = os.path.join(os.path.dirname(symbolic_export[2]), 'run')
  with pytest.raises(cli.InputError, match=r'--saved_model=.*sm needs TensorFlow \(nothing '
                                           r'was written\)'):
    export.export_run(run, str(output), saved_model=str(tmp_path / 'sm'))
  assert sorted(os.listdir(tmp_path)) == []


def test_a_head_that_does_not_fit_the_class_names_is_refused(tmp_path):
  # The run's files; the check comes before its checkpoint is read.
  workdir_lib.save_config(tiny_config(num_classes=6), str(tmp_path / 'run'))
  workdir_lib.save_class_names([f'action {i}' for i in range(5)], str(tmp_path / 'run'))
  with pytest.raises(models.ConfigError, match=r'model.num_classes=6 logits, but the run '
                                               r'names 5 classes'):
    export.export_run(str(tmp_path / 'run'), str(tmp_path / 'm.stablehlo'))
  assert not (tmp_path / 'm.stablehlo').exists()


class ConvBN(nn.Module):
  """A temporal convolution (with or without a bias) and a BN, then a BN after a ReLU."""
  use_bias: bool

  @nn.compact
  def __call__(self, x, train=False):
    y = models.TemporalConv(4, 3, use_bias=self.use_bias, name='conv')(x)
    y = ops.BatchNorm(use_running_average=not train, name='bn')(y)
    return ops.BatchNorm(use_running_average=not train, name='bn_relu')(nn.relu(y))


@pytest.mark.parametrize('use_bias', [True, False])
def test_fold_of_one_convolution_and_its_batch_norm(use_bias):
  x = jnp.asarray(np.random.default_rng(0).normal(size=(7, 2, 3, 5)), jnp.float32)
  module = ConvBN(use_bias)
  variables = jax.device_get(module.init(jax.random.key(0), x))
  rng = np.random.default_rng(1)
  variables = jax.tree.map(
      lambda v: (np.abs(v + rng.normal(0, 0.5, v.shape)) + 0.1).astype(np.float32), variables)
  folded, paths = export.fold_batch_norms(module, variables, x)
  assert paths == ['bn']  # the BN after the ReLU follows no linear map
  bn, stats = variables['params']['bn'], variables['batch_stats']['bn']
  s = bn['scale'] / np.sqrt(stats['var'] + ops.batch_norm.EPSILON)
  shift = bn['bias'] - stats['mean'] * s
  conv = variables['params']['conv']['conv']
  np.testing.assert_allclose(folded['params']['conv']['conv']['kernel'], conv['kernel'] * s,
                             rtol=1e-6)
  if use_bias:
    np.testing.assert_allclose(folded['params']['conv']['conv']['bias'],
                               conv['bias'] * s + shift, rtol=1e-6, atol=1e-6)
    assert 'bn' not in folded['params']
  else:
    np.testing.assert_allclose(folded['params']['bn']['bias'], shift, rtol=1e-6, atol=1e-6)
  assert 'bn' not in folded['batch_stats'] and 'bn_relu' in folded['batch_stats']
  np.testing.assert_allclose(export.inference_apply(module, folded, x),
                             module.apply(variables, x), rtol=1e-5, atol=1e-5)


def _op_counts(exported):
  return collections.Counter(re.findall(r'stablehlo\.(\w+)', exported.mlir_module()))


def test_folded_export_holds_only_the_data_batch_norm():
  config = tiny_config(arch='lean', aggregate_at=2, num_layers=3, channels=(8, 16, 16),
                       strides=(1, 2, 1))
  model = models.create_model(config.model)
  variables = models.init_variables(model, config.model, jax.random.key(0))
  shape = (1, 12, 2, 25, 3)
  plain, none = export.export_forward(model, variables, shape, fold=False)
  folded, paths = export.export_forward(model, variables, shape)
  # Layers 1-2 (Fig. 2, layer 2 aggregating): spatial, temporal and the projections;
  # layer 3 (Fig. 3): its linear map, temporal and Residual/T.
  assert none == [] and len(paths) == 9
  before, after = _op_counts(plain), _op_counts(folded)
  assert before['rsqrt'] == 1 + len(paths) and after['rsqrt'] == 1  # the data BN's
  assert before['subtract'] - after['subtract'] == len(paths)


def test_layout_and_channels_are_checked_against_the_model():
  config = tiny_config(num_joints=17)
  with pytest.raises(models.ConfigError, match=r"num_joints=17, but layout 'ntu25' has 25"):
    export.layout_and_channels(config)
  config.model.layout = 'coco17'
  assert export.layout_and_channels(config) == (layouts.COCO17, 'xyz')
  assert export.layout_and_channels(config, 'xys') == (layouts.COCO17, 'xys')
  with pytest.raises(models.ConfigError, match=r"in_channels=3, but channels 'xy' are 2"):
    export.layout_and_channels(config, 'xy')


def test_loader_and_stream_import_no_training_stack(symbolic_export):
  _, _, output, _ = symbolic_export
  code = ('import sys, numpy as np\n'
          'from stbln_jax import serving, stream\n'
          f'm = serving.load({output!r})\n'
          'print(m(np.zeros((1, 5, 2, 25, 3), np.float32)).shape)\n'
          "heavy = ('flax', 'optax', 'orbax', 'tensorflow', 'tensorflow_datasets', 'grain', "
          "'ml_collections')\n"
          'print(sorted(k for k in sys.modules if k.split(".")[0] in heavy or k in heavy))\n')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          env=env, cwd=os.path.dirname(os.path.dirname(__file__)), check=True)
  shape, modules = result.stdout.strip().splitlines()
  assert shape == '(1, 60)'
  assert modules == '[]', modules


def test_broken_exports_fail_naming_the_file(symbolic_export, tmp_path):
  _, _, output, meta = symbolic_export
  model = str(tmp_path / 'm.stablehlo')
  with pytest.raises(serving.ExportError, match=r'm\.stablehlo\.json: sidecar not found'):
    serving.load(model)

  data = open(output, 'rb').read()
  with open(model, 'wb') as f:
    f.write(data[:len(data) // 2])
  shutil.copy(serving.sidecar_path(output), serving.sidecar_path(model))
  with pytest.raises(serving.ExportError, match=r'm\.stablehlo: \d+ bytes, but its sidecar '
                     r'says \d+ \(truncated'):
    serving.load(model)

  # A truncated file with a sidecar written for it: the deserialiser's turn.
  json.dump(dict(meta, size=len(data) // 2, sha256=serving.sha256_of(data[:len(data) // 2])),
            open(serving.sidecar_path(model), 'w'))
  with pytest.raises(serving.ExportError, match=r'm\.stablehlo: not a jax\.export'):
    serving.load(model)

  # The right file with a sidecar that describes another network.
  with open(model, 'wb') as f:
    f.write(data)
  for wrong, message in (({'class_names': ['a', 'b']}, 'gives 60 logits, but its sidecar '
                          'names 2 classes'),
                         ({'input_shape': [1, 'T', 2, 25, 3]}, 'but its sidecar says'),
                         ({'format': 'other/1'}, "format 'other/1'")):
    json.dump(dict(meta, **wrong), open(serving.sidecar_path(model), 'w'))
    with pytest.raises(serving.ExportError, match=r'm\.stablehlo(\.json)?: .*' + message):
      serving.load(model)
  with open(serving.sidecar_path(model), 'w') as f:
    f.write('{"format": ')
  with pytest.raises(serving.ExportError, match=r'm\.stablehlo\.json: not a readable JSON'):
    serving.load(model)


def test_saved_model_through_jax2tf(symbolic_export, tmp_path):
  tf = pytest.importorskip('tensorflow')
  config, variables, _, _ = symbolic_export
  model, variables = export.inference_model(config.model, variables)
  export.write_saved_model(model, variables, (None, None, 2, 25, 3), str(tmp_path / 'sm'))
  x = np.random.default_rng(4).normal(size=(2, 8, 2, 25, 3)).astype(np.float32)
  restored = tf.saved_model.load(str(tmp_path / 'sm'))
  expected = model.clone(temporal_conv='xla').apply(variables, jnp.asarray(x), train=False)
  np.testing.assert_allclose(restored.f(x).numpy(), expected, atol=1e-5, rtol=1e-5)
