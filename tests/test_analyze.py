"""Analysis of learned spatial matrices: the measures, the pictures, a trained run's report."""

import re

import jax
from matplotlib import image as mpimg
import numpy as np
import pytest

from configs import default
from stbln_jax import analyze
from stbln_jax import graph
from stbln_jax import mixers
from stbln_jax import models
from stbln_jax import train
from stbln_jax.data import layouts

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def tiny_config(**model_overrides):
  config = default.get_config()
  config.model.channels = (8, 8, 8)
  config.model.strides = (1, 1, 1)
  config.model.num_layers = 3
  config.model.update(model_overrides)
  return config


def test_asymmetry_index_of_a_random_matrix_is_the_direct_sum():
  x = np.random.default_rng(0).normal(size=(7, 7))
  num = sum((x[i, j] - x[j, i]) ** 2 for i in range(7) for j in range(7))
  den = sum(x[i, j] ** 2 for i in range(7) for j in range(7))
  assert analyze.asymmetry_index(x) == pytest.approx(np.sqrt(num / den), rel=1e-12)
  assert analyze.asymmetry_index(x - x.T) == pytest.approx(2.0)
  # A directed graph (no edge both ways), as the inward partition of Â.
  assert analyze.asymmetry_index(np.triu(x, 1)) == pytest.approx(np.sqrt(2))
  assert analyze.asymmetry_index(np.zeros((3, 3))) == 0.0
  with pytest.raises(ValueError, match='square'):
    analyze.asymmetry_index(np.ones((1, 3)))


def test_symmetric_mixer_matrices_are_symmetric():
  rng = np.random.default_rng(1)
  l = rng.normal(size=(3, 25, 25)).astype(np.float32)
  # Â with symmetric partitions: the identity, and a bone graph made undirected.
  a = graph.partition_matrices()
  a_hat = np.stack([a[0], a[1] + a[2], 0.5 * (a[1] + a[2])]).astype(np.float32)
  lm = analyze.layer_matrices('symmetric', 1, {'L': l}, a_hat)
  for p in range(3):
    assert analyze.asymmetry_index(lm.learned[p]) < 1e-6          # L Lᵀ
    assert analyze.asymmetry_index(lm.effective[p]) < 1e-6        # Â + L Lᵀ
  np.testing.assert_allclose(lm.effective, a_hat + np.einsum('pvq,pwq->pvw', l, l),
                             rtol=1e-5, atol=1e-4)
  # The NTU graph's inward and outward partitions are directed (Section IV): there
  # Â + L Lᵀ is asymmetric although L Lᵀ is not.
  ntu = analyze.layer_matrices('symmetric', 1, {'L': 1e-2 * l}, graph.adjacency())
  assert analyze.asymmetry_index(ntu.effective[0]) < 1e-6
  assert analyze.asymmetry_index(ntu.effective[1]) > 1.0


def test_relative_distance():
  a = np.eye(4)
  assert analyze.relative_distance(a, a) == 0.0
  assert analyze.relative_distance(3 * a, a) == pytest.approx(2.0)


def test_report_of_an_aggregating_bilinear_network(tmp_path):
  config = tiny_config(mixer='bilinear', aggregate_at=2)
  model = models.create_model(config.model)
  params = models.init_variables(model, config.model, jax.random.key(0))['params']
  path = analyze.write_report(config, params, str(tmp_path), top=4)
  report = open(path).read()
  # Layer 1 keeps V (three partitions and their sum); layer 2 aggregates; layer 3 has no map.
  rows = re.findall(r'^\| (\d+) \| ([0-9Σ]) \|(?: [0-9.—]+ \|){4}$', report, re.M)
  assert rows == [('1', '0'), ('1', '1'), ('1', '2'), ('1', 'Σ')]
  nodes = re.findall(r'^\| 2 \| 1 \| (\d) \| (.+) \|$', report, re.M)
  assert [p for p, _ in nodes] == ['0', '1', '2']
  u = np.asarray(params['layer_2']['mixer']['U'])[0, 0]
  strongest = layouts.NTU25.joint_names[int(np.argmax(np.abs(u)))]
  assert nodes[0][1].startswith(strongest + ' ')
  assert nodes[0][1].count('%') == 4
  for layer in (1, 2):
    png = tmp_path / f'layer_{layer}.png'
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    assert mpimg.imread(png).ndim == 3
    assert f'](layer_{layer}.png)' in report
  assert not (tmp_path / 'layer_3.png').exists()


def _random_params(config, seed=0):
  """Parameters of the config's network with random values (init is traced, not compiled)."""
  model = models.create_model(config.model)
  x = jax.ShapeDtypeStruct(models.input_shape(config.model, 1, 8), np.float32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def test_joint_names_and_reference_graph_are_those_of_the_run_layout(tmp_path):
  coco = layouts.get_layout('coco17')
  config = tiny_config(mixer='bilinear', aggregate_at=2, num_joints=17)
  config.model.layout = 'coco17'
  params = _random_params(config)
  layers = analyze.network_matrices(config, params)
  assert layers[0].joint_names() == coco.joint_names
  np.testing.assert_array_equal(layers[0].reference(), graph.adjacency('coco17'))
  distance = analyze.layer_rows(layers[0])[0]['distance_from_a_hat']
  assert distance == pytest.approx(analyze.relative_distance(
      np.asarray(params['layer_1']['mixer']['U'])[0], graph.adjacency('coco17')[0]))
  report = open(analyze.write_report(config, params, str(tmp_path), top=3)).read()
  assert 'layout `coco17`' in report and 'Â of the coco17 graph' in report
  u = np.asarray(params['layer_2']['mixer']['U'])[0, 0]
  strongest = coco.joint_names[int(np.argmax(np.abs(u)))]
  assert re.search(rf'^\| 2 \| 1 \| 0 \| {strongest} ', report, re.M)

  config = tiny_config(mixer='multiplicative', num_joints=18, adjacency_normalization='symmetric')
  config.model.layout = 'openpose18'
  layers = analyze.network_matrices(config, _random_params(config))
  np.testing.assert_array_equal(layers[0].a_hat, graph.adjacency('openpose18', 'symmetric'))
  assert layers[0].joint_names()[1] == 'neck'


def test_heatmaps_name_the_joints_of_a_layout_file_and_are_readable(tmp_path):
  from test_layouts import STICK8  # pylint: disable=g-import-not-at-top
  stick = layouts.from_json(STICK8)
  config = tiny_config(mixer='additive', num_joints=8)
  config.model.layout, config.model.custom_layout = layouts.custom_fields(stick)
  layers = analyze.network_matrices(config, _random_params(config))
  fig = analyze.layer_figure(layers[0])
  heatmaps = [ax for ax in fig.axes if ax.get_images() and ax.get_title()]
  assert len(heatmaps) == 9  # Â_p, M_p, U_p of 3 partitions
  for ax in heatmaps:
    assert [t.get_text() for t in ax.get_xticklabels()] == list(stick.joint_names)
    assert [t.get_text() for t in ax.get_yticklabels()] == list(stick.joint_names)
  analyze.plot_layer(layers[0], str(tmp_path / 'layer.png'))
  height, width = mpimg.imread(tmp_path / 'layer.png').shape[:2]
  assert width >= 700 and height >= 700
  bilinear = tiny_config(mixer='bilinear')
  analyze.plot_layer(analyze.network_matrices(bilinear, _random_params(bilinear))[0],
                     str(tmp_path / 'one_column.png'))
  assert mpimg.imread(tmp_path / 'one_column.png').shape[1] >= 700


def test_analysis_of_a_trained_symmetric_run(tmp_path):
  config = tiny_config(mixer='symmetric', channels=(8, 8), strides=(1, 1), num_layers=2)
  config.dataset = 'ntu_rgbd/xview'
  config.synthetic.enabled = True
  config.synthetic.num_classes = 4
  config.synthetic.num_subjects = 2
  config.num_frames = 12
  config.batch_size = 8
  config.eval_batch_size = 8
  config.num_epochs = 1
  config.max_train_steps = 2
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)

  loaded, params, step = analyze.load_run(workdir)
  assert step == 2 and loaded.model.mixer == 'symmetric'
  layers = analyze.network_matrices(loaded, params)
  assert [lm.layer for lm in layers] == [1, 2]
  a_hat = graph.adjacency("ntu25", loaded.model.adjacency_normalization)
  l = np.asarray(params['layer_1']['mixer']['L'])
  np.testing.assert_allclose(layers[0].effective, np.asarray(mixers.symmetric_u(a_hat, l)),
                             rtol=1e-6)
  rows = analyze.layer_rows(layers[0])
  assert all(r['asymmetry_learned'] < 1e-6 for r in rows)
  # Two steps moved Â + L Lᵀ, but not far.
  assert all(0 < r['distance_from_a_hat'] < 0.1 for r in rows)
  path = analyze.write_report(loaded, params, str(tmp_path / 'analysis'))
  assert 'asymmetry of learned' in open(path).read()
  png = (tmp_path / 'analysis' / 'layer_1.png').read_bytes()
  assert png.startswith(PNG_SIGNATURE)
