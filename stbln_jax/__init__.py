"""stbln_jax: spatio-temporal graph and bilinear networks for skeleton action recognition.

JAX/Flax implementation of Heidari & Iosifidis, "On the spatial attention in
spatio-temporal graph convolutional networks for skeleton-based human action
recognition": ST-GCN's multiplicative attention (Eq. 1), additive attention
(Eq. 2), symmetric attention (Eq. 3) and the spatio-temporal bilinear network
ST-BLN (Eq. 4) with joint aggregation at layer λ.
"""

__version__ = "0.1.0"
