"""The spatial mixers of the paper: how a layer combines information across joints.

Every mixer maps node features H of shape (..., V_in, C_in) to

    Σ_p U_p · H · W_p        of shape (..., V_out, C_out),

with P partitions, U_p of shape (V_out, V_in) mixing nodes and W_p of shape
(C_in, C_out) mixing channels. They differ only in what U_p is:

  multiplicative  Eq. (1)  U_p = Â_p ⊙ M_p            (ST-GCN; M_p starts at ones)
  additive        Eq. (2)  U_p = Â_p + M_p            (2s-AGCN; M_p starts at zeros)
  symmetric       Eq. (3)  U_p = Â_p + L_p L_pᵀ        (L_p of shape (V, q), random start)
  bilinear        Eq. (4)  U_p free, (V_out, V_in)    (ST-BLN; random start, no Â)

The equations are the small pure functions below; the Flax modules only own the
parameters. Every module names its channel map 'W', so a trained symmetric model
folds into an additive one by replacing 'L' with 'M' = L Lᵀ (`fold_symmetric_params`).

`released=True` builds the mixers as the authors' released code does: a bias per
partition after W_p, W_p drawn as 2s-AGCN draws it, U_p (Eq. 4) uniform in [0, 1), M_p
(Eq. 2) at 1e-6, and for the additive and symmetric mixers 2s-AGCN's data-dependent
C_p added to U_p (`data_attention`). The symmetric mixer has no released code; it is
built as the additive one with M_p = L_p L_pᵀ, C_p included, so that the two differ
only in how M_p is parameterised.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stbln_jax import ops

Array = jax.Array
Dtype = Any

MIXERS = ('multiplicative', 'additive', 'symmetric', 'bilinear')


# ---- The equations ---------------------------------------------------------------

def multiplicative_u(a_hat: Array, m: Array) -> Array:
  """Eq. (1), ST-GCN: U_p = Â_p ⊙ M_p (attention can only re-weight existing bones)."""
  return a_hat * m


def additive_u(a_hat: Array, m: Array) -> Array:
  """Eq. (2), 2s-AGCN: U_p = Â_p + M_p (attention may also connect unconnected joints)."""
  return a_hat + m


def symmetric_attention(l: Array) -> Array:
  """The symmetric mask of Eq. (3): M_p = L_p L_pᵀ for L of shape (P, V, q)."""
  return jnp.einsum('pvq,pwq->pvw', l, l)


def symmetric_u(a_hat: Array, l: Array) -> Array:
  """Eq. (3): U_p = Â_p + L_p L_pᵀ."""
  return a_hat + symmetric_attention(l)


def data_attention(theta: Array, phi: Array) -> Array:
  """2s-AGCN's C_p: C_p[w, v] = softmax_v(⟨θ_p(H)_v, φ_p(H)_w⟩ / (E·T)).

  Args:
    theta, phi: embeddings of the frames-major input, (T, N, V, P, E).
  Returns:
    (N, P, V, V): per sample and partition, rows (output nodes) summing to 1.
  """
  t, _, _, _, e = theta.shape
  logits = jnp.einsum('tnvpe,tnwpe->npwv', theta, phi) / (e * t)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


def spatial_mix_per_sample(h: Array, u: Array, w: Array) -> Array:
  """Σ_p U_p H W_p with a U_p per sample: h (T, N, V_in, C_in), u (N, P, V_out, V_in)."""
  t, n, _, c_in = h.shape
  p, v_out = u.shape[1], u.shape[2]
  z = jnp.einsum('npwv,tnvc->tnwpc', u, h).reshape(t, n, v_out, p * c_in)
  return ops.rows_matmul(z, w.reshape(p * c_in, -1))


def spatial_mix(h: Array, u: Array, w: Array) -> Array:
  """Σ_p U_p H W_p, the spatial step shared by Eqs. (1)-(4) (before BN and ReLU).

  Args:
    h: node features, (..., V_in, C_in).
    u: node maps, (P, V_out, V_in).
    w: channel maps, (P, C_in, C_out).
  Returns:
    (..., V_out, C_out).
  """
  p, v_out, v_in = u.shape
  c_in, c_out = w.shape[1], w.shape[2]
  if c_in > c_out:
    # Mixing channels first is cheaper when they shrink; einsum picks that order.
    return jnp.einsum('pwv,...vc,pcd->...wd', u, h, w)
  # Nodes first (fewer FLOPs when C_in <= C_out, every layer of the paper's networks),
  # as two plain matrix products, which XLA's CPU backend runs 2x faster than the
  # three-operand einsum (BENCHMARKS.md):
  #   Z = [U_1; ...; U_P] · H        (P·V_out, V_in) · (V_in, batch·C_in)
  #   Y = [Z_1 ... Z_P] · [W_1; ...; W_P]   (batch·V_out, P·C_in) · (P·C_in, C_out)
  lead = h.shape[:-2]
  h_nodes_first = jnp.moveaxis(h, -2, 0).reshape(v_in, -1)
  z = jnp.dot(u.reshape(p * v_out, v_in), h_nodes_first).reshape(p, v_out, *lead, c_in)
  n = len(lead)
  z = jnp.transpose(z, (*range(2, 2 + n), 1, 0, 2 + n)).reshape(*lead, v_out, p * c_in)
  return ops.rows_matmul(z, w.reshape(p * c_in, c_out))


# ---- Initialisers -----------------------------------------------------------------

def channel_init(num_partitions: int) -> Callable:
  """He-normal over the output fan, split over the P summed partitions (2s-AGCN's W init)."""
  return nn.initializers.variance_scaling(2.0 / num_partitions, 'fan_out', 'normal',
                                          in_axis=-2, out_axis=-1, batch_axis=(0,))


def released_channel_init(key, shape, dtype=jnp.float32) -> Array:
  """2s-AGCN's W_p: N(0, 2 / (C_out·C_in·P)) for W of shape (P, C_in, C_out)."""
  return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / np.prod(shape))


def _node_init(num_partitions: int) -> Callable:
  """Random U for the bilinear mixer: variance 1/(P·V_in), so Σ_p U_p H keeps H's scale."""
  return nn.initializers.variance_scaling(1.0 / num_partitions, 'fan_in', 'normal',
                                          in_axis=-1, out_axis=-2, batch_axis=(0,))


# ---- Modules ----------------------------------------------------------------------

class _Mixer(nn.Module):
  """Shared parts: the channel maps W (and biases), C_p where released, the contraction.

  Each subclass defines `node_map(num_nodes) -> U` of shape (P, V_out, V_in). Input and
  output are frames-major, (T, N, V, C).
  """
  features: int
  num_partitions: int = 3
  dtype: Dtype = jnp.float32
  released: bool = False

  data_dependent = False  # whether the released form adds 2s-AGCN's C_p

  @nn.compact
  def __call__(self, h: Array) -> Array:
    p, c_in = self.num_partitions, h.shape[-1]
    w_init = released_channel_init if self.released else channel_init(p)
    w = self.param('W', w_init, (p, c_in, self.features), jnp.float32).astype(self.dtype)
    u = self.node_map(h.shape[-2]).astype(self.dtype)
    h = h.astype(self.dtype)
    if self.released and self.data_dependent:
      embed = self.features // 4  # 2s-AGCN's inter_channels
      theta, phi = (nn.Dense(p * embed, dtype=self.dtype, name=name,
                             kernel_init=nn.initializers.normal(np.sqrt(2.0 / embed)))(h)
                    for name in ('theta', 'phi'))
      shape = (*h.shape[:-1], p, embed)
      c = data_attention(theta.reshape(shape), phi.reshape(shape))
      y = spatial_mix_per_sample(h, u + c.astype(self.dtype), w)
    else:
      y = spatial_mix(h, u, w)
    if self.released:
      bias = self.param('bias', nn.initializers.zeros, (p, self.features), jnp.float32)
      y = y + jnp.sum(bias, axis=0).astype(self.dtype)
    return y


class MultiplicativeMixer(_Mixer):
  """Eq. (1): Σ_p (Â_p ⊙ M_p) H W_p, M_p initialised to ones."""
  adjacency: Any = None  # Â, (P, V, V) numpy array (a constant, not a parameter)

  def node_map(self, num_nodes: int) -> Array:
    a_hat = jnp.asarray(self.adjacency)
    m = self.param('M', nn.initializers.ones, a_hat.shape, jnp.float32)
    return multiplicative_u(a_hat, m)


class AdditiveMixer(_Mixer):
  """Eq. (2): Σ_p (Â_p + M_p) H W_p, M_p initialised to zeros (released: 1e-6, + C_p)."""
  adjacency: Any = None

  data_dependent = True

  def node_map(self, num_nodes: int) -> Array:
    a_hat = jnp.asarray(self.adjacency)
    m_init = nn.initializers.constant(1e-6) if self.released else nn.initializers.zeros
    m = self.param('M', m_init, a_hat.shape, jnp.float32)
    return additive_u(a_hat, m)


class SymmetricMixer(_Mixer):
  """Eq. (3): Σ_p (Â_p + L_p L_pᵀ) H W_p with L_p of shape (V, q), q = `rank` (default V).

  L must not start at zero: d(LLᵀ)/dL = 0 at L = 0, so a zero L would never move.
  L starts at N(0, `l_init_std`²), which makes L Lᵀ a small (≈ q·std² on the diagonal)
  positive semi-definite perturbation of Â, so the layer starts close to Eq. (2)'s.
  """
  adjacency: Any = None
  rank: int | None = None
  l_init_std: float = 0.02

  data_dependent = True

  def node_map(self, num_nodes: int) -> Array:
    a_hat = jnp.asarray(self.adjacency)
    p, v, _ = a_hat.shape
    q = v if self.rank is None else self.rank
    l = self.param('L', nn.initializers.normal(self.l_init_std), (p, v, q), jnp.float32)
    return symmetric_u(a_hat, l)


class BilinearMixer(_Mixer):
  """Eq. (4), ST-BLN: Σ_p U_p H W_p with U_p ∈ R^{V_out×V_in} learned freely, no Â.

  `num_nodes_out` (V_out) is free: fewer nodes aggregate joints, V_out = 1 pools the
  whole skeleton into one node (layer λ of Fig. 3-5). None keeps V_out = V_in.
  """
  num_nodes_out: int | None = None

  def node_map(self, num_nodes: int) -> Array:
    v_out = num_nodes if self.num_nodes_out is None else self.num_nodes_out
    init = nn.initializers.uniform(1.0) if self.released else _node_init(self.num_partitions)
    return self.param('U', init, (self.num_partitions, v_out, num_nodes), jnp.float32)


def make_mixer(name: str, features: int, *, adjacency: np.ndarray | None = None,
               num_nodes_out: int | None = None, rank: int | None = None,
               dtype: Dtype = jnp.float32, released: bool = False,
               module_name: str | None = 'mixer') -> nn.Module:
  """Builds the mixer called `name` (one of MIXERS) as a submodule named `module_name`."""
  if name == 'bilinear':
    return BilinearMixer(features, dtype=dtype, released=released,
                         num_nodes_out=num_nodes_out, name=module_name)
  if num_nodes_out is not None:
    raise ValueError(f"only the 'bilinear' mixer can change the number of nodes, not {name!r}")
  if name not in MIXERS:
    raise ValueError(f'unknown mixer {name!r}; choose one of {MIXERS}')
  common = dict(num_partitions=adjacency.shape[0], dtype=dtype, released=released,
                adjacency=adjacency, name=module_name)
  if name == 'symmetric':
    return SymmetricMixer(features, rank=rank, **common)
  return {'multiplicative': MultiplicativeMixer, 'additive': AdditiveMixer}[name](features, **common)


# ---- Folding (Section IV: symmetric attention costs nothing extra at inference) -----

def fold_symmetric_params(params: Any) -> Any:
  """Turns a symmetric model's parameters into an additive model's: M = L Lᵀ.

  Walks the parameter tree; every mixer holding 'L' gets 'M' = L Lᵀ instead, so the
  additive mixer computes (Â + M) H W = (Â + L Lᵀ) H W with the cost of Eq. (2).
  Everything else (W, BN, convolutions, head) is kept as is.
  """
  if not isinstance(params, dict) and not hasattr(params, 'items'):
    return params
  out = {}
  for key, value in params.items():
    if key == 'L':
      out['M'] = symmetric_attention(jnp.asarray(value))
    else:
      out[key] = fold_symmetric_params(value)
  return out
