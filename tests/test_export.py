"""Exported networks: the same logits as the Flax model, a loader without the training
stack, and clear errors for broken exports.

The workdir is written directly (config, class names, one checkpoint of perturbed
initial variables), so no training step is compiled.
"""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from stbln_jax import checkpoint
from stbln_jax import export
from stbln_jax import models
from stbln_jax import serving
from stbln_jax import workdir as workdir_lib


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
