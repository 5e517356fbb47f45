"""The skeleton graph: partitions, and the NTU Â as 2s-AGCN builds it (in the U·H orientation)."""

import numpy as np
import pytest

from stbln_jax import graph


def _two_stream_agcn_spatial_graph() -> np.ndarray:
  """2s-AGCN's `Graph('spatial').A`, step by step from its lists (graph/ntu_rgb_d.py, tools.py)."""
  v = 25
  inward_1based = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
                   (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
                   (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)]
  inward = [(i - 1, j - 1) for i, j in inward_1based]
  outward = [(j, i) for i, j in inward]

  def edge2mat(links):
    a = np.zeros((v, v))
    for i, j in links:
      a[j, i] = 1
    return a

  def normalize_digraph(a):  # every column divided by its sum
    col = a.sum(0)
    return a @ np.diag([1.0 / s if s > 0 else 0.0 for s in col])

  identity = edge2mat([(i, i) for i in range(v)])
  return np.stack([identity, normalize_digraph(edge2mat(inward)),
                   normalize_digraph(edge2mat(outward))])


def test_default_a_hat_is_2s_agcn_spatial_graph_transposed():
  agcn = _two_stream_agcn_spatial_graph()
  a_hat = graph.adjacency()
  np.testing.assert_allclose(a_hat, np.swapaxes(agcn, 1, 2), rtol=0, atol=1e-7)
  assert a_hat.max() <= 1.0
  # U·H form: every node averages its neighbours in a partition, rows sum to 1 or 0.
  rows = a_hat.sum(-1)
  assert np.all(np.isclose(rows, 1.0) | (rows == 0))
  # The centre has no parent (row 0 in partition 1) and averages its 4 children.
  assert rows[1, graph.CENTER_JOINT] == 0
  np.testing.assert_allclose(a_hat[2, graph.CENTER_JOINT][a_hat[2, graph.CENTER_JOINT] > 0],
                             0.25)


def test_graph_partitions_cover_every_bone_once():
  a = graph.partition_matrices()
  assert a.shape == (3, 25, 25)
  np.testing.assert_array_equal(a[0], np.eye(25))
  assert a[1].sum() == a[2].sum() == 24
  # The two directions are each other's transpose and the skeleton is a tree.
  np.testing.assert_array_equal(a[1], a[2].T)
  # Partition 1: a joint gathers from its parent (one each, none for the centre).
  assert a[1].sum(1)[graph.CENTER_JOINT] == 0 and a[2].sum(1)[graph.CENTER_JOINT] == 4
  for child, parent in graph.NTU_BONES:
    assert a[1, child, parent] == 1 and a[2, parent, child] == 1


def test_symmetric_normalisation_uses_row_and_column_degrees():
  a = graph.partition_matrices()
  a_hat = graph.normalize(a, 'symmetric')
  for p in range(3):
    d_out, d_in = a[p].sum(1), a[p].sum(0)
    expected = np.zeros((25, 25))
    for i, j in zip(*np.nonzero(a[p])):
      expected[i, j] = 1.0 / np.sqrt(d_out[i] * d_in[j])
    np.testing.assert_allclose(a_hat[p], expected, rtol=1e-6)
  assert a_hat.max() <= 1.0
  with pytest.raises(ValueError, match='unknown adjacency normalization'):
    graph.normalize(a, 'column')


def test_adjacency_of_each_layout_has_its_number_of_joints():
  assert graph.adjacency('coco17').shape == (3, 17, 17)
  assert graph.adjacency('openpose18', 'symmetric').shape == (3, 18, 18)
  with pytest.raises(ValueError, match="unknown skeleton layout 'h36m'"):
    graph.adjacency('h36m')
