"""The PyTorch reference network of `benchmark --reference` (needs PyTorch; skipped without)."""

import pytest

torch = pytest.importorskip('torch')

from stbln_jax import benchmark  # pylint: disable=wrong-import-position
from stbln_jax import torch_reference  # pylint: disable=wrong-import-position


def test_reference_has_the_published_parameters_and_flops():
  model = torch_reference.ReferenceSTBLN(num_classes=60, persons=2)
  # The authors' ST-BLN: 5.24M parameters, 55.9 forward GFLOPs per sample at T=300, M=2.
  assert torch_reference.num_params(model) == 5_236_198
  assert len(model.layers) == 10
  model.eval()
  flops = torch_reference.forward_flops(model, torch.zeros(1, 300, 2, 25, 3))
  assert 55.8e9 < flops < 56.0e9


def test_reference_training_step_changes_the_parameters_and_inference_does_not():
  model, train, infer, info = torch_reference.make_steps(batch=2, frames=8, persons=1)
  assert info['params'] == torch_reference.num_params(model) and info['threads'] >= 1
  before = [p.detach().clone() for p in model.parameters()]
  running_mean = model.data_bn.running_mean.clone()
  infer()
  assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
  assert torch.equal(running_mean, model.data_bn.running_mean)
  train()
  assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
  assert not torch.equal(running_mean, model.data_bn.running_mean)


def test_benchmark_reference_reports_both_and_the_speedup():
  variant = benchmark.Variant(batch=2, frames=8, num_layers=1)
  row = benchmark.run_variant(variant, repeats=2, steps=1, warmup=0, reference=True)
  for key in ('reference_train_samples_per_s', 'reference_infer_samples_per_s',
              'train_speedup', 'infer_speedup'):
    assert row[key] > 0, (key, row)
  assert row['infer_speedup'] == pytest.approx(
      row['infer_samples_per_s'] / row['reference_infer_samples_per_s'])
  head, _, line = benchmark.format_table([row]).splitlines()
  assert head.endswith('ref train/s  ref infer/s  × train  × infer')
  assert float(line.split()[-1]) == pytest.approx(row['infer_speedup'], abs=0.006)
