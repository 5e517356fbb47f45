"""The network: shapes for every mixer × λ × depth, folding, structure, config errors, cost."""

import contextlib
import io
import itertools
import pathlib
import re

import flax.linen as nn
import jax
from jax import ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from stbln_jax import flops
from stbln_jax import mixers
from stbln_jax import models

README = pathlib.Path(__file__).resolve().parents[1] / 'README.md'


def model_config(**overrides):
  cfg = default.get_config().model
  for key, value in overrides.items():
    setattr(cfg, key, value)
  return cfg


def tiny_config(**overrides):
  base = dict(channels=(8, 16, 16), strides=(1, 2, 1), num_layers=3, num_classes=5)
  base.update(overrides)
  return model_config(**base)


def _randomize(tree, key, scale):
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(key, len(leaves))
  return treedef.unflatten(
      [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


@pytest.mark.parametrize('mixer', mixers.MIXERS)
def test_every_mixer_lambda_and_depth_builds_with_the_right_logits(mixer):
  x = jnp.zeros((3, 12, 2, 25, 3))
  lambdas = (None, 1, 6, 10) if mixer == 'bilinear' else (None,)
  for lam, depth in itertools.product(lambdas, (1, 4, 10)):
    cfg = model_config(mixer=mixer, aggregate_at=lam, num_layers=depth)
    model = models.create_model(cfg)
    logits = jax.eval_shape(lambda: model.apply(model.init(jax.random.key(0), x), x))
    assert logits.shape == (3, 60), (mixer, lam, depth)
    assert logits.dtype == jnp.float32
  if mixer != 'bilinear':
    for lam in (1, 6, 10):
      with pytest.raises(models.ConfigError, match="needs model.mixer='bilinear'"):
        models.create_model(model_config(mixer=mixer, aggregate_at=lam))


@pytest.mark.parametrize('mixer,lam', [('multiplicative', None), ('additive', None),
                                       ('symmetric', None), ('bilinear', None),
                                       ('bilinear', 1), ('bilinear', 2)])
def test_forward_pass_runs_and_is_finite(mixer, lam):
  cfg = tiny_config(mixer=mixer, aggregate_at=lam)
  model = models.create_model(cfg)
  x = jax.random.normal(jax.random.key(1), (4, 10, 2, 25, 3))
  variables = model.init(jax.random.key(0), x)
  logits, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert logits.shape == (4, 5)
  assert np.all(np.isfinite(logits))
  # Training mode updates the BN statistics, including the input data BN.
  before = variables['batch_stats']['data_bn']['mean']
  after = updates['batch_stats']['data_bn']['mean']
  assert before.shape == (2, 25, 3)  # one statistic per (person, joint, coordinate)
  assert not np.allclose(before, after)


def test_folding_symmetric_into_additive_gives_the_same_logits():
  cfg = tiny_config(mixer='symmetric')
  model = models.create_model(cfg)
  x = jax.random.normal(jax.random.key(2), (3, 10, 2, 25, 3))
  variables = model.init(jax.random.key(0), x)
  # Non-trivial parameters everywhere: trained-looking L, W, BN scales and statistics.
  params = _randomize(variables['params'], jax.random.key(3), 0.3)
  stats = jax.tree.map(lambda s: jnp.abs(s) + 0.5,
                       _randomize(variables['batch_stats'], jax.random.key(4), 0.3))
  logits = model.apply({'params': params, 'batch_stats': stats}, x)

  folded = mixers.fold_symmetric_params(params)
  additive_cfg = tiny_config(mixer='additive')
  additive = models.create_model(additive_cfg)
  folded_logits = additive.apply({'params': folded, 'batch_stats': stats}, x)
  assert float(jnp.abs(logits).max()) > 1e-2
  np.testing.assert_allclose(folded_logits, logits, atol=1e-5, rtol=1e-5)
  # The folded model is an additive one: its attention is M, same size as Eq. (2)'s.
  assert jax.tree.structure(folded) == jax.tree.structure(
      additive.init(jax.random.key(0), x)['params'])


def test_aggregation_structure_follows_figures_2_and_3():
  cfg = model_config(aggregate_at=3, num_layers=5)
  model = models.create_model(cfg)
  x = jnp.zeros((1, 8, 2, 25, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  assert params['layer_1']['mixer']['U'].shape == (3, 25, 25)
  assert params['layer_2']['mixer']['U'].shape == (3, 25, 25)
  # Layer λ maps 25 joints to one node; both residuals map (V_in, C_in) → (V_out, C_out).
  assert params['layer_3']['mixer']['U'].shape == (3, 1, 25)
  assert params['layer_3']['residual_v']['map']['dense']['kernel'].shape == (25 * 64, 64)
  assert params['layer_3']['residual_t']['map']['dense']['kernel'].shape == (25 * 64, 64)
  # After λ: a plain channel map, no mixer and no Residual/V.
  for name in ('layer_4', 'layer_5'):
    assert 'mixer' not in params[name] and 'residual_v' not in params[name]
  assert params['layer_4']['linear']['kernel'].shape == (64, 64)
  assert params['layer_5']['residual_t']['map']['kernel'].shape == (64, 128)  # C and T change
  # Layer 1 has no Residual/T; layer 2 (same shape) has identity residuals.
  assert 'residual_t' not in params['layer_1'] and 'residual_v' in params['layer_1']
  assert 'residual_v' not in params['layer_2'] and 'residual_t' not in params['layer_2']


def test_spatial_bn_starts_near_zero_so_blocks_start_at_their_residual():
  model = models.create_model(model_config(num_layers=2))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 2, 25, 3))))
  real = models.init_variables(model, model_config(num_layers=2), jax.random.key(0))
  np.testing.assert_allclose(real['params']['layer_2']['bn_spatial']['scale'], 1e-6)
  np.testing.assert_allclose(real['params']['layer_2']['bn_temporal']['scale'], 1.0)
  assert params['params']['head']['kernel'].shape == (64, 60)


def _bn_loss(module, variables, weights):
  """A loss of a BN's output and of its updated batch statistics, so both carry gradients."""

  def loss(params, x):
    y, updates = module.apply({'params': params, 'batch_stats': variables['batch_stats']},
                              x, mutable=['batch_stats'])
    stats = updates['batch_stats']
    return (jnp.sum(y.astype(jnp.float32) * weights)
            + jnp.sum(3.0 * stats['mean'] + stats['var'] ** 2)), stats

  return loss


def test_batch_norm_computes_what_flax_batch_norm_computes():
  x = 3.0 * jax.random.normal(jax.random.key(0), (4, 7, 5, 6)) + 1.0
  weights = jax.random.normal(jax.random.key(1), x.shape)
  ours = models.BatchNorm(use_running_average=False, scale_init_value=0.7)
  flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5,
                         scale_init=nn.initializers.constant(0.7))
  variables = ours.init(jax.random.key(2), x)
  # The same variables, so checkpoints of either load into the other.
  assert (jax.tree.map(jnp.shape, variables)
          == jax.tree.map(jnp.shape, flax_bn.init(jax.random.key(2), x)))
  np.testing.assert_allclose(variables['params']['scale'], 0.7)
  params = {'scale': jnp.linspace(0.5, 1.5, 6), 'bias': jnp.linspace(-1.0, 1.0, 6)}
  grad = jax.value_and_grad(_bn_loss(ours, variables, weights), (0, 1), has_aux=True)
  flax_grad = jax.value_and_grad(_bn_loss(flax_bn, variables, weights), (0, 1), has_aux=True)
  (loss, stats), grads = grad(params, x)
  (flax_loss, flax_stats), flax_grads = flax_grad(params, x)
  np.testing.assert_allclose(loss, flax_loss, rtol=1e-6)
  for a, b in zip(jax.tree.leaves((stats, grads)), jax.tree.leaves((flax_stats, flax_grads))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  # Evaluation mode normalises with the running statistics.
  trained = {'params': params, 'batch_stats': stats}
  np.testing.assert_allclose(
      models.BatchNorm(use_running_average=True).apply(trained, x),
      nn.BatchNorm(use_running_average=True, epsilon=1e-5).apply(trained, x), rtol=1e-6,
      atol=1e-6)


def _saved_residual_bytes(fn, *args) -> list[tuple[str, int]]:
  """(dtype, bytes) of every array `fn`'s gradient keeps from its forward pass."""
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    ad_checkpoint.print_saved_residuals(fn, *args)
  sizes = []
  for dtype, dims in re.findall(r'^(\w+)\[([\d,]*)\]', out.getvalue(), re.M):
    sizes.append((dtype, int(np.prod([int(d) for d in dims.split(',') if d]))
                  * {'f32': 4, 'bf16': 2}.get(dtype, 1)))
  return sizes


def test_batch_norm_gradient_keeps_only_its_input_in_the_compute_dtype():
  x = jax.random.normal(jax.random.key(0), (4, 7, 5, 16), jnp.bfloat16)
  weights = jnp.float32(1.0)  # a scalar: the loss itself keeps nothing of x's size
  sizes = {}
  for name, module in [
      ('ours', models.BatchNorm(use_running_average=False, dtype=jnp.bfloat16)),
      ('flax', nn.BatchNorm(use_running_average=False, dtype=jnp.bfloat16))]:
    variables = module.init(jax.random.key(1), x)
    loss = _bn_loss(module, variables, weights)
    sizes[name] = _saved_residual_bytes(lambda p, x: loss(p, x)[0], variables['params'], x)
  big = [(dtype, b) for dtype, b in sizes['ours'] if b >= x.size]
  assert big == [('bf16', 2 * x.size)]  # the input, nothing else of its size
  # flax keeps two float32 arrays of x's size: about four times the bytes.
  assert sum(b for _, b in sizes['flax']) >= 3.5 * sum(b for _, b in sizes['ours'])


def test_a_truncated_network_does_not_reach_lambda():
  model = models.create_model(model_config(aggregate_at=6, num_layers=4))
  params = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 2, 25, 3))))['params']
  assert sorted(params) == ['data_bn', 'head', 'layer_1', 'layer_2', 'layer_3', 'layer_4']
  assert all(params[f'layer_{i}']['mixer']['U'].shape == (3, 25, 25) for i in range(1, 5))


@pytest.mark.parametrize('overrides,message', [
    (dict(mixer='gat'), 'is not a mixer'),
    (dict(aggregate_at=12), r'must be in 1\.\.10'),
    (dict(aggregate_at=0), r'must be in 1\.\.10'),
    (dict(num_layers=11), r'num_layers=11 must be in 1\.\.10'),
    (dict(strides=(1, 2)), 'one stride per layer'),
    (dict(mixer='symmetric', symmetric_rank=30), r'symmetric_rank=30 must be in 1\.\.25'),
    (dict(dtype='float16'), "must be 'float32' or 'bfloat16'"),
])
def test_config_errors_say_what_to_change(overrides, message):
  with pytest.raises(models.ConfigError, match=message):
    models.create_model(model_config(**overrides))


def test_lambda_one_past_the_last_layer_means_no_aggregation():
  a = flops.model_cost(model_config(aggregate_at=11), num_frames=32)
  b = flops.model_cost(model_config(), num_frames=32)
  assert a['params'] == b['params'] and a['flops'] == b['flops']


def _readme_table_row(label: str) -> list[str]:
  for line in README.read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if cells and cells[0] == label:
      return cells
  raise AssertionError(f'README.md has no table row starting with {label!r}')


def _number(cell: str) -> float:
  return float(re.sub(r'[^0-9.]', '', cell))


@pytest.mark.parametrize('mixer', mixers.MIXERS)
def test_parameter_count_and_flops_are_what_the_readme_states(mixer):
  cost = flops.model_cost(model_config(mixer=mixer))
  row = _readme_table_row(f'`{mixer}`')
  assert cost['params'] == int(_number(row[2])), row
  assert cost['gflops'] == pytest.approx(_number(row[3]), abs=0.01), row


def test_aggregation_flop_ratios_are_what_the_readme_states():
  costs = {lam: flops.model_cost(model_config(aggregate_at=lam)) for lam in (6, 7, 10)}
  for lam in (6, 7):
    ratio = costs[10]['flops'] / costs[lam]['flops']
    row = _readme_table_row(f'λ = {lam}')
    assert ratio == pytest.approx(_number(row[4]), abs=0.005), row
    assert costs[lam]['params'] == int(_number(row[1])), row
