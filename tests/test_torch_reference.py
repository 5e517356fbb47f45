"""The released PyTorch networks and `benchmarks.model --reference` (skipped without PyTorch)."""

import numpy as np
import pytest

torch = pytest.importorskip('torch')

from benchmarks import model as benchmark  # pylint: disable=wrong-import-position
from benchmarks import torch_reference  # pylint: disable=wrong-import-position


@pytest.mark.parametrize('mixer,params', [('bilinear', 5_236_198), ('additive', 3_469_510),
                                          ('multiplicative', 3_141_478)])
def test_released_networks_have_the_published_parameter_counts(mixer, params):
  model = torch_reference.create(mixer, num_class=60, num_person=2)
  assert torch_reference.num_params(model) == params
  assert list(model.layers) == [f'layer{i}' for i in range(1, 11)]


def test_state_dict_names_and_shapes_are_the_authors():
  shapes = {k: tuple(v.shape) for k, v in torch_reference.STBLN().state_dict().items()}
  assert shapes['data_bn.running_var'] == (150,)
  assert shapes['layers.layer1.bln.rand_graph'] == (3, 25, 25)
  assert shapes['layers.layer1.bln.g_conv.2.weight'] == (64, 3, 1, 1)
  assert shapes['layers.layer1.bln.bln_residual.0.weight'] == (64, 3, 1, 1)
  assert shapes['layers.layer1.bln.bn.num_batches_tracked'] == ()
  assert shapes['layers.layer5.tcn.t_conv.weight'] == (128, 128, 9, 1)
  assert shapes['layers.layer5.residual.t_conv.weight'] == (128, 64, 9, 1)
  assert shapes['fc.weight'] == (60, 256)
  assert not any(k.startswith('layers.layer1.residual') for k in shapes)

  shapes = {k: tuple(v.shape) for k, v in torch_reference.AGCN().state_dict().items()}
  assert shapes['layers.layer1.gcn.graph_attn'] == (3, 25, 25)
  assert shapes['layers.layer8.gcn.a_conv.1.weight'] == (64, 128, 1, 1)  # C_out / 4
  assert shapes['layers.layer8.gcn.gcn_residual.0.weight'] == (256, 128, 1, 1)
  assert shapes['layers.layer8.residual.t_conv.weight'] == (256, 128, 1, 1)
  # Identities where shapes match; the fixed graph is not saved.
  assert not any(k.startswith(('layers.layer2.residual', 'layers.layer2.gcn.gcn_residual'))
                 for k in shapes)
  assert 'layers.layer1.gcn.A' not in shapes

  stgcn = torch_reference.STGCN().state_dict()
  assert not any('a_conv' in k or 'b_conv' in k for k in stgcn)
  assert torch.all(stgcn['layers.layer3.gcn.graph_attn'] == 1.0)
  assert torch.all(torch_reference.AGCN().state_dict()['layers.layer3.gcn.graph_attn'] == 1e-6)


def test_ntu_graph_is_the_column_normalised_partitions():
  a = torch_reference.ntu_graph()
  assert a.shape == (3, 25, 25) and a.dtype == np.float32
  np.testing.assert_array_equal(a[0], np.eye(25))
  # Joint 21 (index 20) is the parent of joints 2, 3, 5 and 9: inward, A[parent, child] = 1
  # (each child has one parent); outward, A[child, parent] = 1/4 (a column sums to 1).
  children = [1, 2, 4, 8]
  np.testing.assert_array_equal(a[1][20, children], 1.0)
  np.testing.assert_allclose(a[2][children, 20], 0.25)
  assert a[1].sum() == 24  # 24 bones, one per column with a parent
  for p in (1, 2):
    sums = a[p].sum(axis=0)
    np.testing.assert_allclose(sums[sums > 0], 1.0, rtol=1e-6)
  assert a[1][:, 20].sum() == 0  # the centre has no parent


def test_stbln_has_the_published_flops():
  model = torch_reference.STBLN(num_class=60, num_person=2)
  model.eval()
  # The authors' ST-BLN: 55.9 forward GFLOPs per sample at T=300, M=2 (2 per multiply-add).
  flops = torch_reference.forward_flops(model, torch.zeros(1, 3, 300, 25, 2))
  assert 55.8e9 < flops < 56.0e9


@pytest.mark.parametrize('mixer', ['bilinear', 'additive', 'multiplicative'])
def test_training_step_changes_the_parameters_and_inference_does_not(mixer):
  model, train, infer, info = torch_reference.make_steps(mixer, batch=2, frames=8, persons=1,
                                                         num_layers=2)
  assert info['params'] == torch_reference.num_params(model) and info['threads'] >= 1
  before = [p.detach().clone() for p in model.parameters()]
  running_mean = model.data_bn.running_mean.clone()
  infer()
  assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
  assert torch.equal(running_mean, model.data_bn.running_mean)
  train()
  assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
  assert not torch.equal(running_mean, model.data_bn.running_mean)


def test_bfloat16_steps_compute_under_autocast_and_keep_float32_weights():
  model, train, infer, info = torch_reference.make_steps('bilinear', batch=2, frames=8,
                                                         persons=1, num_layers=1,
                                                         dtype='bfloat16')
  seen = []
  model.layers.layer1.tcn.t_conv.register_forward_hook(
      lambda module, inputs, output: seen.append(output.dtype))
  before = [p.detach().clone() for p in model.parameters()]
  infer()
  train()
  assert info['dtype'] == 'bfloat16' and seen == [torch.bfloat16, torch.bfloat16]
  assert all(p.dtype == torch.float32 for p in model.parameters())
  assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
  with pytest.raises(ValueError, match="dtype 'float16'"):
    torch_reference.make_steps('bilinear', batch=2, frames=8, persons=1, dtype='float16')


def test_unknown_mixer_says_which_have_a_network():
  with pytest.raises(ValueError, match="no released PyTorch network for mixer 'symmetric'"):
    torch_reference.create('symmetric')


def test_benchmark_reference_times_the_same_architecture():
  released = benchmark.Variant(batch=2, frames=8, num_layers=1)
  lean = benchmark.Variant(arch='lean', batch=2, frames=8, num_layers=1)
  rows = [benchmark.run_variant(v, repeats=2, steps=1, warmup=0, reference=True)
          for v in (released, lean)]
  row = rows[0]
  assert row['reference_network'] == 'STBLN'
  assert row['reference_params'] == torch_reference.num_params(
      torch_reference.STBLN(num_layers=1))
  assert row['params'] == row['reference_params']  # the same network on both sides
  for key in ('reference_train_samples_per_s', 'reference_infer_samples_per_s',
              'train_speedup', 'infer_speedup'):
    assert row[key] > 0, (key, row)
  assert row['infer_speedup'] == pytest.approx(
      row['infer_samples_per_s'] / row['reference_infer_samples_per_s'])
  assert rows[1]['reference_network'] is None and 'infer_speedup' not in rows[1]
  head, _, line, lean_line = benchmark.format_table(rows).splitlines()
  assert head.endswith('ref  ref train/s  ref infer/s  × train  × infer')
  assert float(line.split()[-1]) == pytest.approx(row['infer_speedup'], abs=0.006)
  assert lean_line.split()[-5:] == ['none', '-', '-', '-', '-']
