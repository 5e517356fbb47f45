"""The skeleton graph of any layout: the partition operators Â_p of Eqs. (1)-(3).

Only the Â-based mixers (Eqs. 1-3) use the graph; the bilinear mixer (Eq. 4) does not.
The joints, bones and centre of a layout come from `stbln_jax.data.layouts`.

Orientation: the mixers compute U·H (output node i = Σ_j U[i, j] H_j). 2s-AGCN (and the
authors' released code) builds A[j, i] = 1 for each pair (i, j) of its lists, divides
every column by its sum and computes H·A; the same operator in U·H form is Â_p = A_pᵀ,
whose rows sum to 1 (or 0): every node averages the neighbours it has in partition p.
"""

from typing import Sequence

import numpy as np

from stbln_jax.data import layouts

# The NTU facts (`stbln_jax.data.ntu`): 24 bones as 0-based (child, parent) pairs in
# 2s-AGCN's `inward` order; joint 20 (spine shoulder) is the centre.
NUM_JOINTS = layouts.NTU25.num_joints
NTU_BONES = layouts.NTU25.bones
CENTER_JOINT = layouts.NTU25.center

NORMALIZATIONS = ('mean', 'symmetric')


def partition_matrices(num_joints: int = NUM_JOINTS,
                       bones: Sequence[tuple[int, int]] = NTU_BONES) -> np.ndarray:
  """Binary partition adjacencies A_p in U·H form, shape (3, V, V), 2s-AGCN's order.

  Row i of A_p lists the joints that node i gathers from:
    p=0 the node itself (A_0 = I);
    p=1 2s-AGCN's 'inward' partition: a joint gathers from its parent (nearer the
        centre), A_1[child, parent] = 1;
    p=2 its 'outward' partition: a joint gathers from its children, A_2[parent, child] = 1.
  For a tree rooted at the centre these are ST-GCN's 'spatial' partitions (root,
  centripetal, centrifugal).
  """
  a = np.zeros((3, num_joints, num_joints), np.float32)
  a[0] = np.eye(num_joints, dtype=np.float32)
  for child, parent in bones:
    a[1, child, parent] = 1.0
    a[2, parent, child] = 1.0
  return a


def normalize(a: np.ndarray, method: str = 'mean') -> np.ndarray:
  """Normalises each partition of `a` (shape (P, V_out, V_in), U·H form).

  'mean' (2s-AGCN, the default): every row divided by its sum, Â_p = D_out^-1 A_p, so
    each node averages its neighbours (rows of zeros stay zero). This is 2s-AGCN's
    column-normalised matrix transposed.
  'symmetric': Â_p = D_out^-1/2 A_p D_in^-1/2 with the row sums D_out and the column
    sums D_in (nodes without edges in a partition keep zero weights).
  """
  a = np.asarray(a, np.float64)

  def inverse(d, power):
    return np.where(d > 0, np.where(d > 0, d, 1.0) ** -power, 0.0)

  d_out, d_in = a.sum(axis=-1), a.sum(axis=-2)
  if method == 'mean':
    out = inverse(d_out, 1.0)[..., :, None] * a
  elif method == 'symmetric':
    out = inverse(d_out, 0.5)[..., :, None] * a * inverse(d_in, 0.5)[..., None, :]
  else:
    raise ValueError(f'unknown adjacency normalization {method!r}; use one of {NORMALIZATIONS}')
  return out.astype(np.float32)


def adjacency(layout: str | layouts.Layout = 'ntu25', method: str = 'mean') -> np.ndarray:
  """The normalised partition operators Â_p of a layout (a registered name or any
  `layouts.Layout`, e.g. a layout file's), shape (3, V, V), float32."""
  skeleton = layouts.get_layout(layout)
  return normalize(partition_matrices(skeleton.num_joints, skeleton.bones), method)
