"""Cost of the network: thop-style multiply-adds (the paper's Fig. 5) next to XLA's FLOPs."""

import json
import pathlib
import subprocess
import sys

import pytest

from configs import default
from stbln_jax import flops

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def model_config(**overrides):
  cfg = default.get_config().model
  for key, value in overrides.items():
    setattr(cfg, key, value)
  return cfg


def test_released_st_bln_reproduces_figure_5():
  out = subprocess.run(
      [sys.executable, '-m', 'stbln_jax.flops', '--config=configs/default.py',
       '--config.model.arch=released', '--sweep_aggregate_at', '--json'],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
  rows = {r['aggregate_at']: r for r in json.loads(out)}
  assert all(r['arch'] == 'released' and r['num_frames'] == 300 for r in rows.values())
  # Fig. 5: ×2.78 and ×2.14 fewer multiply-adds at λ = 6 and 7 than at λ = 10, 24.59 G
  # at λ = 10 and 24.93 G without aggregation.
  assert rows[6]['speedup_vs_last_layer'] == pytest.approx(2.78, abs=0.05)
  assert rows[7]['speedup_vs_last_layer'] == pytest.approx(2.14, abs=0.05)
  assert rows[10]['gmacs'] == pytest.approx(24.59, rel=0.12)
  assert rows[None]['gmacs'] == pytest.approx(24.93, rel=0.12)
  assert rows[None]['params'] == 5_236_198
  # XLA counts 2 FLOPs per multiply-add of everything: the convolutions and dense layers
  # are nearly all of it.
  for r in rows.values():
    assert r['flops'] == pytest.approx(2 * r['macs'], rel=0.1)
    assert r['flops'] != 2 * r['macs']


def _expected_macs(arch, mixer, channels, strides, frames, persons=2, joints=25, classes=5):
  """thop's count written out: output size × fan-in of every conv and linear layer."""
  released = arch == 'released'
  total = channels[-1] * classes
  t_in = frames
  c_in = 3
  for i, (c, s) in enumerate(zip(channels, strides), start=1):
    t_out = -(-t_in // s)
    per_node = 3 * t_in * c_in * c  # the P = 3 channel maps W_p
    if released and mixer == 'additive':
      per_node += 2 * t_in * c_in * 3 * (c // 4)  # 2s-AGCN's embeddings θ_p, φ_p
    if c_in != c or (released and mixer == 'bilinear'):
      per_node += t_in * c_in * c  # Residual/V
    per_node += t_out * 9 * c * c  # the temporal convolution
    if i > 1 and released and mixer == 'bilinear':
      per_node += t_out * 9 * c_in * c  # Residual/T, a 9×1 conv
    elif i > 1 and (c_in != c or s != 1):
      per_node += t_out * c_in * c  # Residual/T, a strided 1×1 conv
    total += persons * joints * per_node
    t_in, c_in = t_out, c
  return total


@pytest.mark.parametrize('arch,mixer', [('released', 'bilinear'), ('released', 'additive'),
                                        ('lean', 'multiplicative')])
def test_macs_count_the_conv_and_linear_layers_only(arch, mixer):
  channels, strides = (8, 16, 16), (1, 2, 1)
  cfg = model_config(arch=arch, mixer=mixer, channels=channels, strides=strides, num_layers=3,
                     num_classes=5)
  cost = flops.model_cost(cfg, num_frames=10)
  assert cost['macs'] == _expected_macs(arch, mixer, channels, strides, frames=10)
  assert cost['gmacs'] == cost['macs'] / 1e9


def test_aggregation_counts_the_layer_that_maps_the_joints_to_one_node():
  # Released λ = 2 of a 2-layer network: layer 2 maps (25, 8) → (1, 16) with a 1×25
  # Residual/V and a 9×25 Residual/T, both convolutions in PyTorch.
  cfg = model_config(arch='released', channels=(8, 16), strides=(1, 1), num_layers=2,
                     num_classes=5, aggregate_at=2)
  t, m = 10, 2
  layer_1 = 25 * (3 * t * 3 * 8 + t * 3 * 8 + t * 9 * 8 * 8)
  layer_2 = 3 * t * 8 * 16 + t * 25 * 8 * 16 + t * 9 * 16 * 16 + t * 9 * 25 * 8 * 16
  assert flops.model_cost(cfg, num_frames=t)['macs'] == m * (layer_1 + layer_2) + 16 * 5
