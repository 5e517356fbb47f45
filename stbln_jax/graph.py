"""The NTU RGB+D skeleton graph: joints, bones and the normalised partition adjacencies Â_p.

Only the Â-based mixers (Eqs. 1-3) use the graph; the bilinear mixer (Eq. 4) does not.
Joints follow the Kinect v2 order; the constants below are 0-based.
"""

from typing import Sequence

import numpy as np

NUM_JOINTS = 25

# The 24 NTU bones as 1-based (child, parent) pairs; joint 21 (spine shoulder) is the centre.
NTU_BONES_1BASED = (
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
    (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
    (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
)
NTU_BONES = tuple((c - 1, p - 1) for c, p in NTU_BONES_1BASED)
CENTER_JOINT = 20

NORMALIZATIONS = ('symmetric', 'column')


def partition_matrices(num_joints: int = NUM_JOINTS,
                       bones: Sequence[tuple[int, int]] = NTU_BONES) -> np.ndarray:
  """Binary adjacencies A_p of the three spatial partitions, shape (3, V, V).

  Row i of A_p lists the joints that node i gathers from (the mixers compute U·H, so
  output node i sums over input nodes j with weight U_ij):
    p=0 root: the node itself (A_0 = I);
    p=1 inward (centripetal): a parent gathers from its children, A_1[parent, child] = 1;
    p=2 outward (centrifugal): a child gathers from its parent, A_2[child, parent] = 1.
  Bones are (child, parent) with the parent nearer the skeleton's centre, so the
  inward/outward split is the ST-GCN partition by distance to the centre of gravity.
  """
  a = np.zeros((3, num_joints, num_joints), np.float32)
  a[0] = np.eye(num_joints, dtype=np.float32)
  for child, parent in bones:
    a[1, parent, child] = 1.0
    a[2, child, parent] = 1.0
  return a


def normalize(a: np.ndarray, method: str = 'symmetric', eps: float = 1e-3) -> np.ndarray:
  """Normalises each partition of `a` (shape (P, V, V)).

  'symmetric' (the paper, Section II): Â_p = D_p^-1/2 A_p D_p^-1/2 with the row degree
    D_p,ii = Σ_j A_p,ij + ε, ε = 0.001. Because the inward/outward partitions are
    directed, a node with no edge in a partition (a leaf in the inward one, the centre
    in the outward one) has degree ε, and its edges get weight 1/sqrt(ε·d) ≈ 31.6/sqrt(d):
    the literal formula, kept as written; the BN after the spatial sum absorbs the scale.
  'column' (2s-AGCN's code): Â_p = A_p D_p^-1 with column sums D_p,jj = Σ_i A_p,ij
    (zero columns stay zero).
  """
  a = np.asarray(a, np.float64)
  if method == 'symmetric':
    d = a.sum(axis=-1) + eps
    inv_sqrt = 1.0 / np.sqrt(d)
    out = inv_sqrt[..., :, None] * a * inv_sqrt[..., None, :]
  elif method == 'column':
    col = a.sum(axis=-2)
    inv = np.where(col > 0, 1.0 / np.where(col > 0, col, 1.0), 0.0)
    out = a * inv[..., None, :]
  else:
    raise ValueError(f'unknown adjacency normalization {method!r}; use one of {NORMALIZATIONS}')
  return out.astype(np.float32)


def ntu_adjacency(method: str = 'symmetric') -> np.ndarray:
  """The normalised NTU partition adjacencies Â_p, shape (3, 25, 25), float32."""
  return normalize(partition_matrices(), method)
