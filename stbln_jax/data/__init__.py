"""Data: raw NTU RGB+D `.skeleton` files, their preprocessing and datasets.

Only the light, numpy-only reader is imported here; the TFDS builder and the
input pipeline live in their own modules.
"""

from stbln_jax.data.skeleton import read_skeleton
from stbln_jax.data.skeleton import SkeletonFormatError
