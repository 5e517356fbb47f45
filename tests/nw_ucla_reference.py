"""NW-UCLA's evaluation input, step by step from the dataset's description.

Written from ../shared/nw_ucla/SOURCES.md (CTR-GCN's NW-UCLA test input), in float64
and without any of the package's code, to check the input pipeline against:
subtract joint 2 (spine) of the first frame; map each coordinate over the whole clip
to [-1, 1] by its minimum and maximum; take frames floor(linspace(0, T - 1, 52));
for the bone stream, child - parent over the 19 bones, the centre (joint 3) zero.
"""

import numpy as np

NUM_FRAMES = 52
# (child, parent), 1-based, as SOURCES.md lists them.
BONES = ((1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
         (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
         (19, 18), (20, 19))


def eval_input(skeletons, stream: str = 'joint') -> np.ndarray:
  """(52, 20, 3) float64 of a file's 'skeletons' (T, 20, 3)."""
  x = np.array(skeletons, dtype=np.float64)
  x = x - x[0, 2 - 1]
  low = x.reshape(-1, 3).min(axis=0)
  high = x.reshape(-1, 3).max(axis=0)
  x = (x - low) / (high - low) * 2.0 - 1.0
  frames = np.floor(np.linspace(0, len(x) - 1, NUM_FRAMES)).astype(int)
  x = x[frames]
  if stream == 'bone':
    bones = np.zeros_like(x)
    for child, parent in BONES:
      bones[:, child - 1] = x[:, child - 1] - x[:, parent - 1]
    x = bones
  return x
