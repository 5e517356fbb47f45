"""Every skeleton layout, registered or from a layout file: one tree at its centre, ST-GCN's
partitions, its bone stream, a model; and layout files that are not one tree."""

import collections
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from stbln_jax import graph
from stbln_jax import mixers
from stbln_jax import models
from stbln_jax.data import layouts
from stbln_jax.data import preprocess

# A skeleton of one's own as its layout file gives it (the README's stick figure).
STICK8 = {'name': 'stick8',
          'joints': ['pelvis', 'chest', 'head', 'l_hand', 'r_hand', 'l_foot', 'r_foot', 'neck'],
          'bones': [['chest', 'pelvis'], ['neck', 'chest'], ['head', 'neck'],
                    ['l_hand', 'chest'], ['r_hand', 'chest'], ['l_foot', 'pelvis'],
                    ['r_foot', 'pelvis']],
          'centre': 'pelvis'}
LAYOUTS = [layouts.LAYOUTS[name] for name in sorted(layouts.LAYOUTS)] + [
    layouts.from_json(STICK8)]
LAYOUT_IDS = [layout.name for layout in LAYOUTS]


def _hops_from_centre(layout: layouts.Layout) -> dict[int, int]:
  """Hop distance of every joint to the centre, by BFS over the undirected bones."""
  neighbours = collections.defaultdict(set)
  for a, b in layout.bones:
    neighbours[a].add(b)
    neighbours[b].add(a)
  hops = {layout.center: 0}
  queue = collections.deque([layout.center])
  while queue:
    i = queue.popleft()
    for j in sorted(neighbours[i]):
      if j not in hops:
        hops[j] = hops[i] + 1
        queue.append(j)
  return hops


def _stgcn_spatial_partitions(layout: layouts.Layout) -> np.ndarray:
  """ST-GCN's 'spatial' strategy (root, centripetal, centrifugal), row i = what node i gathers.

  Built from the undirected edges and hop distances alone: for node i and a neighbour j
  (itself included), the same distance to the centre puts j in the root subset, a nearer
  j in the centripetal one and a farther j in the centrifugal one.
  """
  v = layout.num_joints
  hops = _hops_from_centre(layout)
  edges = {(i, i) for i in range(v)}
  edges |= {(a, b) for a, b in layout.bones} | {(b, a) for a, b in layout.bones}
  out = np.zeros((3, v, v), np.int64)
  for i, j in edges:
    if hops[j] == hops[i]:
      out[0, i, j] = 1
    elif hops[j] < hops[i]:
      out[1, i, j] = 1
    else:
      out[2, i, j] = 1
  return out


@pytest.mark.parametrize('layout', LAYOUTS, ids=LAYOUT_IDS)
def test_bones_form_one_tree_rooted_at_the_centre(layout):
  v, name = layout.num_joints, layout.name
  assert layouts.from_json(json.loads(json.dumps(layout.to_json()))) == layout
  assert len(set(layout.joint_names)) == v
  assert len(layout.bones) == v - 1
  joints = {j for bone in layout.bones for j in bone}
  assert joints == set(range(v))
  children = [child for child, _ in layout.bones]
  # One parent per joint, none for the centre.
  assert len(set(children)) == v - 1 and layout.center not in children
  assert layout.parents[layout.center] == layout.center
  for joint in range(v):
    path, j = [joint], joint
    while j != layout.center:
      j = layout.parents[j]
      assert j not in path, f'{name}: the bones from joint {joint} form a cycle {path}'
      path.append(j)
    # Each step moves one hop nearer the centre.
    assert len(path) - 1 == _hops_from_centre(layout)[joint]


@pytest.mark.parametrize('layout', LAYOUTS, ids=LAYOUT_IDS)
def test_a_hat_partitions_are_st_gcn_spatial_partitions(layout):
  v = layout.num_joints
  binary = graph.partition_matrices(v, layout.bones)
  np.testing.assert_array_equal(binary != 0, _stgcn_spatial_partitions(layout) != 0)
  a_hat = graph.adjacency(layout)
  assert a_hat.shape == (3, v, v) and a_hat.dtype == np.float32
  np.testing.assert_array_equal(a_hat != 0, binary != 0)
  rows = a_hat.sum(-1)
  assert np.all(np.isclose(rows, 1.0) | (rows == 0))
  # Only the centre has nothing nearer the centre; only the leaves have nothing farther.
  assert list(np.flatnonzero(rows[1] == 0)) == [layout.center]
  leaves = sorted(set(range(v)) - {parent for _, parent in layout.bones})
  assert list(np.flatnonzero(rows[2] == 0)) == leaves


@pytest.mark.parametrize('layout', LAYOUTS, ids=LAYOUT_IDS)
def test_bone_stream_is_child_minus_parent(layout):
  name = layout
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 2, layout.num_joints, 3)).astype(np.float32)  # (N, T, M, V, C)
  bone = preprocess.select_stream(x, 'bone', layout=name)
  assert bone.shape == x.shape
  for child, parent in layout.bones:
    np.testing.assert_allclose(bone[..., child, :], x[..., child, :] - x[..., parent, :],
                               rtol=1e-6)
  np.testing.assert_array_equal(bone[..., layout.center, :], 0.0)

  # 'xys': x and y are differenced, a bone's score is the mean of its joints' scores.
  x[..., 2] = rng.uniform(size=x.shape[:-1])
  bone = preprocess.select_stream(x, 'bone', layout=name, channels='xys')
  for child, parent in layout.bones:
    np.testing.assert_allclose(bone[..., child, :2], x[..., child, :2] - x[..., parent, :2],
                               rtol=1e-6)
    np.testing.assert_allclose(bone[..., child, 2], (x[..., child, 2] + x[..., parent, 2]) / 2,
                               rtol=1e-6)
  np.testing.assert_array_equal(bone[..., layout.center, :2], 0.0)
  np.testing.assert_allclose(bone[..., layout.center, 2], x[..., layout.center, 2], rtol=1e-6)


# (layout, coordinates, persons): 3D joints, 2D joints without scores, 2D joints with
# scores, a layout file's, 3D joints of one person.
MODEL_CASES = [('ntu25', 3, 2), ('coco17', 2, 2), ('openpose18', 3, 2), ('stick8', 3, 2),
               ('kinect20', 3, 1)]


@pytest.mark.parametrize('name,channels,persons', MODEL_CASES)
def test_a_tiny_model_of_each_layout_and_mixer_gives_finite_logits(name, channels, persons):
  layout = LAYOUTS[LAYOUT_IDS.index(name)]
  v = layout.num_joints
  x = jax.random.normal(jax.random.key(0), (2, 8, persons, v, channels))
  rng = np.random.default_rng(1)
  variants = [(mixer, None) for mixer in mixers.MIXERS] + [('bilinear', 2)]
  nets, variables = [], []
  for mixer, lam in variants:
    cfg = default.get_config().model
    cfg.update(dict(mixer=mixer, aggregate_at=lam, channels=(4, 8), strides=(1, 2),
                    num_layers=2, num_classes=5, num_persons=persons, num_joints=v,
                    in_channels=channels))
    cfg.layout, cfg.custom_layout = layouts.custom_fields(layout)
    net = models.create_model(cfg)
    assert layouts.get_layout(net.layout) == layout
    # Shapes from init without compiling it; random parameters, positive variances.
    shapes = jax.eval_shape(net.init, jax.random.key(1), x)
    params = jax.tree.map(lambda s: 0.3 * rng.standard_normal(s.shape, np.float32),
                          shapes['params'])
    stats = jax.tree.map(lambda s: 0.5 + rng.uniform(size=s.shape).astype(np.float32),
                         shapes['batch_stats'])
    learned = params['layer_1']['mixer']
    assert learned[{'bilinear': 'U', 'symmetric': 'L'}.get(mixer, 'M')].shape == (3, v, v)
    if lam == 2:
      assert params['layer_2']['mixer']['U'].shape == (3, 1, v)
    nets.append(net)
    variables.append({'params': params, 'batch_stats': stats})

  @jax.jit
  def run(variables, x):  # one compilation for every variant of this layout
    return [net.apply(v, x) for net, v in zip(nets, variables)]

  for (mixer, lam), logits in zip(variants, run(variables, x)):
    assert logits.shape == (2, 5) and logits.dtype == jnp.float32, (mixer, lam)
    assert np.all(np.isfinite(logits)), (mixer, lam)
    assert float(jnp.abs(logits).max()) > 0, (mixer, lam)


def test_a_graph_mixer_rejects_a_layout_of_another_size():
  cfg = default.get_config().model
  cfg.update(dict(mixer='multiplicative', num_joints=17))
  cfg.layout = 'openpose18'
  with pytest.raises(models.ConfigError,
                     match=r"num_joints=17 does not fit model.layout='openpose18' \(18 joints\)"):
    models.create_model(cfg)
  cfg.layout = 'coco17'
  assert models.create_model(cfg).layout == 'coco17'


def test_kinect20_is_kinect_v1_with_ctr_gcns_nw_ucla_bones():
  layout = layouts.get_layout('kinect20')
  assert layout.num_joints == 20 and layout.joint_names[layout.center] == 'shoulder_center'
  # CTR-GCN's graph/ucla.py pairs, 1-based (child, parent).
  ucla = {(1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9), (11, 10),
          (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
          (20, 19)}
  assert {(c + 1, p + 1) for c, p in layout.bones} == ucla
  assert layout.joint_names[1] == 'spine' and layout.joint_names[11] == 'right_hand'


def _faults():
  """(change to STICK8, the fault its file is reported with)."""
  bones = STICK8['bones']
  return [
      (dict(bones=bones[:-1] + [['r_foot', 'hip']]),
       "bone ['r_foot', 'hip'] names unknown joint 'hip'"),
      (dict(bones=bones + [['head', 'chest']]),
       "not a tree: joint 'head' has two parents ('neck' and 'chest')"),
      (dict(bones=bones[:-1]), "not a tree: joint 'r_foot' has no parent"),
      (dict(bones=bones[:1] + [['neck', 'head']] + bones[2:]),
       'not a tree: the bones make a cycle head -> neck -> head'),
      (dict(bones=bones + [['pelvis', 'chest']]),
       "the centre 'pelvis' has a parent ('chest')"),
      (dict(centre='hip'), "centre 'hip' is not one of its joints"),
      (dict(centre=None), "no 'centre'"),
      (dict(joints=STICK8['joints'] + ['neck']), "joint 'neck' is listed twice"),
      (dict(name='coco17'), "name 'coco17' is a built-in layout with other joints or bones"),
      (dict(bones=[['chest']]), "bone ['chest'] is not a pair [child, parent]"),
  ]


@pytest.mark.parametrize('change,fault', _faults())
def test_a_bad_layout_file_is_one_line_naming_the_file_and_the_fault(tmp_path, change, fault):
  data = {k: v for k, v in {**STICK8, **change}.items() if v is not None}
  path = tmp_path / 'layout.json'
  path.write_text(json.dumps(data))
  with pytest.raises(layouts.LayoutError) as error:
    layouts.read_layout_file(path)
  message = str(error.value)
  assert message.startswith(f'{path}: ') and fault in message, message
  assert '\n' not in message


def test_a_layout_file_that_is_not_json_says_so(tmp_path):
  path = tmp_path / 'layout.json'
  path.write_text('{"name": "x",')
  with pytest.raises(layouts.LayoutError, match=f'^{path}: not valid JSON'):
    layouts.read_layout_file(path)
