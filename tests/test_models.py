"""The network: both architectures, shapes for every mixer × λ × depth, folding, structure, cost."""

import itertools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from stbln_jax import flops
from stbln_jax import mixers
from stbln_jax import models

MODEL_DOC = pathlib.Path(__file__).resolve().parents[1] / 'docs' / 'model.md'


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


@pytest.mark.parametrize('arch', models.ARCHS)
@pytest.mark.parametrize('mixer', mixers.MIXERS)
def test_every_mixer_lambda_and_depth_builds_with_the_right_logits(mixer, arch):
  x = jnp.zeros((3, 12, 2, 25, 3))
  lambdas = (None, 1, 6, 10) if mixer == 'bilinear' else (None,)
  for lam, depth in itertools.product(lambdas, (1, 4, 10)):
    cfg = model_config(mixer=mixer, aggregate_at=lam, num_layers=depth, arch=arch)
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


@pytest.mark.parametrize('arch', models.ARCHS)
def test_folding_symmetric_into_additive_gives_the_same_logits(arch):
  cfg = tiny_config(mixer='symmetric', arch=arch)
  model = models.create_model(cfg)
  x = jax.random.normal(jax.random.key(2), (3, 10, 2, 25, 3))
  variables = model.init(jax.random.key(0), x)
  # Non-trivial parameters everywhere: trained-looking L, W, BN scales and statistics.
  params = _randomize(variables['params'], jax.random.key(3), 0.3)
  stats = jax.tree.map(lambda s: jnp.abs(s) + 0.5,
                       _randomize(variables['batch_stats'], jax.random.key(4), 0.3))
  logits = model.apply({'params': params, 'batch_stats': stats}, x)

  folded = mixers.fold_symmetric_params(params)
  additive_cfg = tiny_config(mixer='additive', arch=arch)
  additive = models.create_model(additive_cfg)
  folded_logits = additive.apply({'params': folded, 'batch_stats': stats}, x)
  assert float(jnp.abs(logits).max()) > 1e-2
  np.testing.assert_allclose(folded_logits, logits, atol=1e-5, rtol=1e-5)
  # The folded model is an additive one: its attention is M, same size as Eq. (2)'s.
  assert jax.tree.structure(folded) == jax.tree.structure(
      additive.init(jax.random.key(0), x)['params'])


def test_lean_aggregation_structure_follows_figures_2_and_3():
  cfg = model_config(aggregate_at=3, num_layers=5, arch='lean')
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


@pytest.mark.parametrize('mixer,params', [('bilinear', 5_236_198), ('additive', 3_469_510),
                                          ('multiplicative', 3_141_478),
                                          ('symmetric', 3_469_510)])
def test_released_networks_have_the_released_parameter_counts(mixer, params):
  model = models.create_model(model_config(mixer=mixer, arch='released'))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 2, 25, 3))))
  assert flops.count_params(variables['params']) == params


def test_released_structure_follows_the_authors_code():
  x = jnp.zeros((1, 8, 2, 25, 3))

  def params(**overrides):
    model = models.create_model(model_config(arch='released', **overrides))
    return jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']

  bilinear = params(mixer='bilinear')
  # ST-BLN: a 1×1 conv + BN on the input in every layer, a 9×1 conv + BN in layers 2-10.
  for i in range(1, 11):
    layer = bilinear[f'layer_{i}']
    assert 'kernel' in layer['residual_v']['map'] and 'bias' in layer['residual_v']['map']
    assert 'bias' in layer['mixer'] and 'bias' in layer['temporal']['conv']
    assert ('residual_t' in layer) == (i > 1)
  assert bilinear['layer_5']['residual_t']['map']['conv']['kernel'].shape == (9, 1, 64, 128)
  # 2s-AGCN and ST-GCN: identity residuals where shapes match (layers 2-4, 6-7, 9-10).
  for mixer in ('additive', 'multiplicative'):
    p = params(mixer=mixer)
    assert sorted(i for i in range(1, 11) if 'residual_v' in p[f'layer_{i}']) == [1, 5, 8]
    assert sorted(i for i in range(1, 11) if 'residual_t' in p[f'layer_{i}']) == [5, 8]
    assert p['layer_5']['residual_t']['map']['kernel'].shape == (64, 128)
    assert ('theta' in p['layer_2']['mixer']) == (mixer == 'additive')
  assert params(mixer='additive')['layer_8']['mixer']['theta']['kernel'].shape == (128, 3 * 64)
  # Aggregation: layer λ maps (V_in, C_in) → (1, C_out) on both residuals, the layers
  # after it are the same block on one node.
  agg = params(mixer='bilinear', aggregate_at=3, num_layers=5)
  assert agg['layer_3']['mixer']['U'].shape == (3, 1, 25)
  assert agg['layer_3']['residual_v']['map']['dense']['kernel'].shape == (25 * 64, 64)
  assert agg['layer_3']['residual_t']['map']['conv']['kernel'].shape == (9, 1, 25 * 64, 64)
  assert agg['layer_4']['mixer']['U'].shape == (3, 1, 1)
  assert agg['layer_5']['residual_t']['map']['conv']['kernel'].shape == (9, 1, 64, 128)


def test_spatial_bn_starts_near_zero_so_blocks_start_at_their_residual():
  model = models.create_model(model_config(num_layers=2))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 2, 25, 3))))
  real = models.init_variables(model, model_config(num_layers=2), jax.random.key(0))
  np.testing.assert_allclose(real['params']['layer_2']['bn_spatial']['scale'], 1e-6)
  np.testing.assert_allclose(real['params']['layer_2']['bn_temporal']['scale'], 1.0)
  assert params['params']['head']['kernel'].shape == (64, 60)


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
    (dict(arch='paper'), 'is not an architecture'),
    (dict(adjacency_normalization='column'), 'adjacency_normalization'),
    (dict(temporal_conv='fft'), 'temporal_conv'),
    (dict(layout='h36m'), "model.layout='h36m' is not a skeleton layout"),
    (dict(mixer='additive', num_joints=17),
     r"num_joints=17 does not fit model.layout='ntu25' \(25 joints\).*set model.layout"),
])
def test_config_errors_say_what_to_change(overrides, message):
  with pytest.raises(models.ConfigError, match=message):
    models.create_model(model_config(**overrides))


def test_strides_follow_the_channels_unless_given():
  cfg = model_config()
  assert cfg.strides is None and models.strides_of(cfg) == (1, 1, 1, 1, 2, 1, 1, 2, 1, 1)
  cfg = model_config(channels=(32, 32, 64, 64, 64), num_layers=4)  # channels alone
  assert models.create_model(cfg).strides == (1, 1, 2, 1)
  cfg = model_config(channels=(32, 32, 64, 64), strides=(1, 2, 1, 1), num_layers=4)
  assert models.create_model(cfg).strides == (1, 2, 1, 1)


def test_a_model_needs_the_fields_the_dataset_decides():
  cfg = default.dataset_decides(default.get_config()).model
  models.validate_model_config(cfg)  # unset: checked once the dataset is known
  with pytest.raises(models.ConfigError, match=r'model.num_classes, model.layout, '
                                               r'model.num_persons, model.num_joints, '
                                               r'model.in_channels unset'):
    models.create_model(cfg)


def test_the_bilinear_mixer_needs_no_graph_and_takes_any_number_of_joints():
  model = models.create_model(model_config(mixer='bilinear', num_joints=7, num_layers=2))
  x = jnp.zeros((1, 8, 2, 7, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x))['params']
  assert params['layer_1']['mixer']['U'].shape == (3, 7, 7)
  graph_model = models.create_model(model_config(mixer='symmetric', num_layers=2))
  with pytest.raises(models.ConfigError, match="25-joint graph of layout 'ntu25'.* 7 joints"):
    jax.eval_shape(lambda: graph_model.init(jax.random.key(0), x))


def test_lambda_one_past_the_last_layer_means_no_aggregation():
  a = flops.model_cost(model_config(aggregate_at=11), num_frames=32)
  b = flops.model_cost(model_config(), num_frames=32)
  assert a['params'] == b['params'] and a['flops'] == b['flops']


def _table_rows(label: str) -> list[list[str]]:
  rows = []
  for line in MODEL_DOC.read_text().splitlines():
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if cells and cells[0] == label:
      rows.append(cells)
  assert rows, f'docs/model.md has no table row starting with {label!r}'
  return rows


def _number(cell: str) -> float:
  return float(re.sub(r'[^0-9.]', '', cell))


@pytest.mark.parametrize('arch', models.ARCHS)
@pytest.mark.parametrize('mixer', mixers.MIXERS)
def test_parameter_count_and_cost_are_what_the_model_page_states(mixer, arch):
  cost = flops.model_cost(model_config(mixer=mixer, arch=arch))
  (row,) = [r for r in _table_rows(f'`{mixer}`') if r[1] == arch]
  assert cost['params'] == int(_number(row[2])), row
  assert cost['gflops'] == pytest.approx(_number(row[3]), abs=0.01), row
  assert cost['gmacs'] == pytest.approx(_number(row[4]), abs=0.01), row


@pytest.mark.parametrize('arch, column', [('released', 1), ('lean', 5)])
def test_aggregation_costs_are_what_the_model_page_states(arch, column):
  costs = {lam: flops.model_cost(model_config(aggregate_at=lam, arch=arch))
           for lam in (6, 7, 10)}
  for lam in (6, 7):
    (row,) = _table_rows(f'λ = {lam}')
    params, gflops, gmacs, ratio = row[column:column + 4]
    assert costs[lam]['params'] == int(_number(params)), row
    assert costs[lam]['gflops'] == pytest.approx(_number(gflops), abs=0.01), row
    assert costs[lam]['gmacs'] == pytest.approx(_number(gmacs), abs=0.01), row
    assert costs[10]['macs'] / costs[lam]['macs'] == pytest.approx(_number(ratio), abs=0.005), row


def test_bfloat16_logits_agree_with_float32_and_parameters_stay_float32():
  x = jax.random.normal(jax.random.key(1), (4, 16, 2, 25, 3))
  logits = {}
  for dtype in ('float32', 'bfloat16'):
    cfg = model_config(num_layers=3, dtype=dtype, num_classes=10)
    model = models.create_model(cfg)
    variables = model.init(jax.random.key(0), x)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables['params']))
    out, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    assert out.dtype == jnp.float32
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(updates['batch_stats']))
    logits[dtype] = model.apply({**variables, **updates}, x, train=False)
    assert logits[dtype].dtype == jnp.float32
  ref, low = np.asarray(logits['float32']), np.asarray(logits['bfloat16'])
  rel = np.linalg.norm(low - ref) / np.linalg.norm(ref)
  assert rel < 0.03, rel  # bf16 keeps 8 bits of mantissa: ~0.4% per rounding
  assert not np.array_equal(low, ref)  # the bf16 path really computes in bf16


@pytest.mark.parametrize('arch,mixer', [('lean', 'bilinear'), ('released', 'bilinear'),
                                        ('released', 'additive')])
def test_dft_network_matches_the_direct_convolution_network(arch, mixer):
  """The whole network (strided layers included) gives the same logits either way."""
  x = jax.random.normal(jax.random.key(0), (2, 20, 2, 25, 3))
  cfg = model_config(num_layers=6, num_classes=10, arch=arch, mixer=mixer)
  model = models.create_model(cfg)
  variables = _randomize(model.init(jax.random.key(1), x), jax.random.key(2), 0.1)
  direct = model.clone(temporal_conv='xla').apply(variables, x)
  logits = model.clone(temporal_conv='dft').apply(variables, x)
  assert float(jnp.abs(direct).max()) > 1e-2
  np.testing.assert_allclose(logits, direct, rtol=1e-4, atol=1e-4)
