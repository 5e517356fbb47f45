"""PyTorch checkpoints of the released networks → Flax variables and a workdir."""

import io
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from stbln_jax import checkpoint
from stbln_jax import import_torch
from stbln_jax import models
from stbln_jax import predict
from stbln_jax import sharding
from stbln_jax import train
from stbln_jax import workdir as workdir_lib

MIXERS = ('bilinear', 'additive', 'multiplicative')
SAMPLES = pathlib.Path(__file__).parent / 'data' / 'ntu_samples'


def _config(mixer: str, num_classes: int = 10, num_layers: int = 10, num_frames: int = 16):
  config = default.get_config()
  config.model.arch = 'released'
  config.model.mixer = mixer
  config.model.num_classes = num_classes
  config.model.num_layers = num_layers
  config.num_frames = num_frames
  config.batch_size = 2
  config.base_batch_size = 2
  config.base_learning_rate = 0.01  # a step that lowers the loss of these random weights
  return config


def _zeros(cfg) -> dict:
  return {k: np.zeros(s, np.float32) for k, s in import_torch.torch_layout(cfg).items()}


def _torch_network(mixer: str, seed: int = 0, **kwargs):
  """A released PyTorch network with random weights and moved BN statistics."""
  torch = pytest.importorskip('torch')
  from benchmarks import torch_reference  # pylint: disable=import-outside-toplevel
  torch.manual_seed(seed)
  net = torch_reference.create(mixer, **kwargs)
  with torch.no_grad():
    for name, p in net.named_parameters():
      if name.endswith('bias'):
        p.normal_(0.0, 0.1)
      elif p.ndim == 1:  # BN scales, γ = 1e-6 at initialisation
        p.uniform_(0.5, 1.5)
      elif name.endswith(('rand_graph', 'graph_attn')):
        p.uniform_(0.0, 1.0)
    for name, b in net.named_buffers():
      if name.endswith('running_mean'):
        b.normal_(0.0, 0.3)
      elif name.endswith('running_var'):
        b.uniform_(0.5, 2.0)
  return torch, net


def _relative(a, b) -> float:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize('mixer', MIXERS)
def test_converted_network_gives_the_same_logits_and_training_step(mixer):
  config = _config(mixer)
  torch, net = _torch_network(mixer, num_class=10, num_person=2)
  variables = import_torch.convert(net.state_dict(), config.model)
  x = torch.randn(2, 3, 16, 25, 2)  # (N, C, T, V, M)
  ours_x = jnp.asarray(x.permute(0, 2, 4, 3, 1).numpy())  # (N, T, M, V, C)
  labels = torch.tensor([3, 7])

  model = models.create_model(config.model)
  net.eval()
  with torch.no_grad():
    want = net(x).numpy()
  got = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, ours_x)
  assert _relative(got, want) < 1e-4

  # One step of the trainer against one PyTorch SGD step of the same recipe; the loss
  # of the second step is that of the updated weights.
  lr = config.base_learning_rate
  optimizer_t = torch.optim.SGD(net.parameters(), lr=lr, momentum=config.momentum,
                                nesterov=True, weight_decay=config.weight_decay)
  net.train()
  torch_losses = []
  for _ in range(2):
    optimizer_t.zero_grad()
    loss = torch.nn.functional.cross_entropy(net(x), labels)
    loss.backward()
    optimizer_t.step()
    torch_losses.append(loss.item())
  schedule = lambda step: lr  # pylint: disable=unnecessary-lambda-assignment
  optimizer = train.make_optimizer(config, schedule)
  state = {'step': jnp.zeros((), jnp.int32), 'params': variables['params'],
           'batch_stats': variables['batch_stats'],
           'opt_state': optimizer.init(variables['params'])}
  step = jax.jit(lambda s, b: train.train_step(s, b, model=model, optimizer=optimizer,
                                               schedule=schedule))
  batch = {'skeleton': ours_x, 'label': jnp.asarray(labels.numpy())}
  losses = []
  for _ in range(2):
    state, measurements = step(state, batch)
    losses.append(float(measurements['loss']))
  assert losses[1] != pytest.approx(losses[0], rel=1e-3)  # the step changed the weights
  np.testing.assert_allclose(losses, torch_losses, rtol=1e-3)


def test_dataparallel_prefix_opendr_names_and_numpy_input():
  cfg = _config('bilinear', num_layers=2).model
  arrays = _zeros(cfg)
  arrays['layers.layer1.bln.rand_graph'] = np.arange(3 * 25 * 25, dtype=np.float32).reshape(
      3, 25, 25)
  arrays['layers.layer2.bln.bln_residual.1.weight'] = np.arange(64, dtype=np.float32)
  plain = import_torch.convert(arrays, cfg)
  prefixed = import_torch.convert({f'module.{k}': v for k, v in arrays.items()}, cfg)
  jax.tree.map(np.testing.assert_array_equal, plain, prefixed)
  # OpenDR's ST-BLN: the spatial step is `gcn`, its shortcut `gcn_residual`.
  opendr = {k.replace('.bln.bln_residual.', '.gcn.gcn_residual.').replace('.bln.', '.gcn.'): v
            for k, v in arrays.items()}
  assert 'layers.layer2.gcn.gcn_residual.1.weight' in opendr
  jax.tree.map(np.testing.assert_array_equal, plain, import_torch.convert(opendr, cfg))
  np.testing.assert_array_equal(
      plain['params']['layer_2']['residual_v']['bn']['scale'], np.arange(64))
  # Their H·U is our U·H: U_p transposed.
  np.testing.assert_array_equal(plain['params']['layer_1']['mixer']['U'],
                                np.swapaxes(arrays['layers.layer1.bln.rand_graph'], 1, 2))
  # Old PyTorch versions save no num_batches_tracked.
  import_torch.convert({k: v for k, v in arrays.items()
                        if not k.endswith('num_batches_tracked')}, cfg)


@pytest.mark.parametrize('mixer', MIXERS)
def test_missing_unexpected_and_mis_shaped_entries_are_named(mixer):
  cfg = _config(mixer, num_layers=5).model
  arrays = _zeros(cfg)
  name = 'layers.layer5.tcn.t_conv.weight'
  missing = {k: v for k, v in arrays.items() if k != name}
  with pytest.raises(import_torch.StateDictError, match=rf'^{name} is missing'):
    import_torch.convert(missing, cfg)
  extra = {**arrays, 'layers.layer6.tcn.bn.weight': np.ones(128, np.float32)}
  with pytest.raises(import_torch.StateDictError,
                     match=r'^layers.layer6.tcn.bn.weight is not an entry'):
    import_torch.convert(extra, cfg)
  wrong = {**arrays, 'fc.weight': np.zeros((60, 128), np.float32)}
  with pytest.raises(import_torch.StateDictError,
                     match=r'^fc.weight has shape \(60, 128\), but .* has \(10, 128\)'):
    import_torch.convert(wrong, cfg)


def test_configs_without_a_pytorch_network_are_refused():
  cfg = _config('bilinear', num_layers=2).model
  arrays = _zeros(cfg)
  cfg.arch = 'lean'
  with pytest.raises(import_torch.StateDictError, match="model.arch='lean'"):
    import_torch.convert(arrays, cfg)
  cfg = _config('symmetric', num_layers=2).model
  with pytest.raises(import_torch.StateDictError, match="'symmetric' has no released"):
    import_torch.convert(arrays, cfg)


def test_import_command_writes_a_workdir_that_predict_restores(tmp_path):
  torch, net = _torch_network('bilinear', num_class=60, num_person=2, num_layers=2)
  checkpoint_file = tmp_path / 'stbln.pt'
  torch.save({'state_dict': {f'module.{k}': v for k, v in net.state_dict().items()}},
             checkpoint_file)
  workdir = tmp_path / 'imported'
  command = [sys.executable, '-m', 'stbln_jax.import_torch', f'--checkpoint={checkpoint_file}',
             '--config=configs/cv.py', '--config.model.num_layers=2',
             '--config.num_frames=16', f'--workdir={workdir}']
  subprocess.run(command, check=True, capture_output=True, text=True)

  config = workdir_lib.load_config(str(workdir))
  mesh = sharding.make_mesh(jax.local_devices()[:1])
  variables, _, step = checkpoint.restore_variables(str(workdir), sharding.replicated(mesh))
  assert step == 0
  sample = str(SAMPLES / 'S001C001P001R001A011.skeleton')
  inputs, good, errors = predict.load_inputs([sample], config)
  assert good == [sample] and not errors
  logits = models.create_model(config.model).apply(variables, inputs, train=False)
  net.eval()
  with torch.no_grad():
    want = net(torch.from_numpy(np.asarray(inputs)).permute(0, 4, 1, 3, 2)).numpy()
  assert _relative(logits, want) < 1e-4
  out = io.StringIO()
  assert predict.run(str(workdir), [sample], out=out) == 0
  names = workdir_lib.load_class_names(str(workdir))
  assert len(names) == 60
  top1 = out.getvalue().splitlines()[1].split()
  assert top1[:1] == ['1.'] and ' '.join(top1[1:-1]) == names[int(np.argmax(want))]

  # A second import into the same workdir, and a broken checkpoint, fail in one line.
  again = subprocess.run(command, capture_output=True, text=True)
  assert again.returncode == 2 and 'already holds checkpoints' in again.stderr
  broken = tmp_path / 'broken.npz'
  arrays = {k: v.numpy() for k, v in net.state_dict().items() if k != 'fc.bias'}
  np.savez(broken, **arrays)
  failed = subprocess.run([*command[:3], f'--checkpoint={broken}', *command[4:-1],
                           f'--workdir={tmp_path / "other"}'], capture_output=True, text=True)
  assert failed.returncode == 2
  assert failed.stderr.strip().splitlines() == [
      'error: fc.bias is missing from the checkpoint (1 entries of the STBLN network of the '
      'config are missing)']
