"""The four spatial mixers (Eqs. 1-4), their released forms, and folding symmetric into additive."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stbln_jax import graph
from stbln_jax import mixers

A_HAT = graph.adjacency()


def _features(shape=(2, 5, 25, 6), seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def test_symmetric_attention_is_exactly_symmetric_and_learns_from_init():
  mixer = mixers.SymmetricMixer(8, adjacency=A_HAT)
  h = _features()
  params = mixer.init(jax.random.key(1), h)['params']
  l = params['L']
  assert l.shape == (3, 25, 25) and float(jnp.abs(l).max()) > 0
  m = np.asarray(mixers.symmetric_attention(l))
  np.testing.assert_array_equal(m, np.swapaxes(m, -1, -2))  # exact, not approximate
  assert not np.allclose(m, 0)

  target = _features((2, 5, 25, 8), seed=2)

  def loss(p):
    return jnp.mean((mixer.apply({'params': p}, h) - target) ** 2)

  grads = jax.grad(loss)(params)
  assert float(jnp.linalg.norm(grads['L'])) > 1e-6
  # L = 0 is a stationary point: the reason L needs a random start.
  zero = dict(params, L=jnp.zeros_like(l))
  assert float(jnp.linalg.norm(jax.grad(loss)(zero)['L'])) == 0.0


def test_low_rank_symmetric_mixer():
  mixer = mixers.SymmetricMixer(4, adjacency=A_HAT, rank=3)
  params = mixer.init(jax.random.key(0), _features())['params']
  assert params['L'].shape == (3, 25, 3)
  m = np.asarray(mixers.symmetric_attention(params['L']))
  assert all(np.linalg.matrix_rank(m[p], tol=1e-8) <= 3 for p in range(3))


def test_bilinear_with_u_equal_to_a_hat_is_additive_with_zero_attention():
  h = _features()
  additive = mixers.AdditiveMixer(7, adjacency=A_HAT)
  params = additive.init(jax.random.key(3), h)['params']
  np.testing.assert_array_equal(params['M'], 0)  # Eq. (2) starts from Â alone
  bilinear = mixers.BilinearMixer(7)
  y_add = additive.apply({'params': params}, h)
  y_bil = bilinear.apply({'params': {'U': jnp.asarray(A_HAT), 'W': params['W']}}, h)
  np.testing.assert_allclose(y_bil, y_add, rtol=1e-6, atol=1e-6)


def test_multiplicative_starts_at_a_hat_and_keeps_the_bones():
  h = _features()
  mixer = mixers.MultiplicativeMixer(5, adjacency=A_HAT)
  params = mixer.init(jax.random.key(4), h)['params']
  np.testing.assert_array_equal(params['M'], 1)
  # Whatever M becomes, joints that are not connected stay unconnected (Â ⊙ M).
  u = mixers.multiplicative_u(jnp.asarray(A_HAT), jax.random.normal(jax.random.key(5), A_HAT.shape))
  assert np.all(np.asarray(u)[A_HAT == 0] == 0)


def test_spatial_mix_matches_the_sum_over_partitions():
  h = _features((3, 25, 4))
  u = jax.random.normal(jax.random.key(6), (3, 10, 25))
  w = jax.random.normal(jax.random.key(7), (3, 4, 6))
  expected = sum(jnp.einsum('wv,tvc->twc', u[p], h) @ w[p] for p in range(3))
  np.testing.assert_allclose(mixers.spatial_mix(h, u, w), expected, rtol=1e-5, atol=1e-5)


def test_bilinear_changes_the_number_of_nodes():
  h = _features()
  for v_out in (1, 10, 40):
    mixer = mixers.BilinearMixer(6, num_nodes_out=v_out)
    y, variables = mixer.init_with_output(jax.random.key(0), h)
    assert y.shape == (2, 5, v_out, 6)
    assert variables['params']['U'].shape == (3, v_out, 25)


def test_only_bilinear_changes_the_number_of_nodes():
  with pytest.raises(ValueError, match="only the 'bilinear' mixer"):
    mixers.make_mixer('additive', 8, adjacency=A_HAT, num_nodes_out=1)
  with pytest.raises(ValueError, match='unknown mixer'):
    mixers.make_mixer('attention', 8, adjacency=A_HAT)


def test_fold_replaces_l_by_l_lt_and_keeps_the_rest():
  params = {'layer_1': {'mixer': {'L': jnp.ones((3, 25, 2)), 'W': jnp.ones((3, 3, 4))},
                        'bn_spatial': {'scale': jnp.ones(4)}}}
  folded = mixers.fold_symmetric_params(params)
  assert set(folded['layer_1']['mixer']) == {'M', 'W'}
  np.testing.assert_array_equal(folded['layer_1']['mixer']['M'], 2.0)
  np.testing.assert_array_equal(folded['layer_1']['bn_spatial']['scale'], 1.0)
  np.testing.assert_array_equal(folded['layer_1']['mixer']['W'], params['layer_1']['mixer']['W'])


def test_released_mixers_start_as_the_authors_code_does():
  h = _features((2, 5, 25, 64))
  bilinear = mixers.BilinearMixer(64, released=True).init(jax.random.key(0), h)['params']
  u = bilinear['U']
  assert 0.0 <= float(u.min()) and float(u.max()) < 1.0 and float(u.mean()) > 0.4  # U[0, 1)
  # 2s-AGCN's W_p: N(0, 2 / (C_out·C_in·P)); a zero bias per partition.
  assert float(jnp.std(bilinear['W'])) == pytest.approx(np.sqrt(2.0 / (64 * 64 * 3)), rel=0.05)
  np.testing.assert_array_equal(bilinear['bias'], np.zeros((3, 64)))
  additive = mixers.AdditiveMixer(64, adjacency=A_HAT, released=True).init(
      jax.random.key(0), h)['params']
  np.testing.assert_allclose(additive['M'], 1e-6)
  assert additive['theta']['kernel'].shape == additive['phi']['kernel'].shape == (64, 3 * 16)
  multiplicative = mixers.MultiplicativeMixer(64, adjacency=A_HAT, released=True).init(
      jax.random.key(0), h)['params']
  assert sorted(multiplicative) == ['M', 'W', 'bias']  # no data-dependent attention


def test_data_attention_is_a_softmax_over_the_input_joints():
  theta = _features((4, 2, 25, 3, 5), seed=8)
  phi = _features((4, 2, 25, 3, 5), seed=9)
  c = np.asarray(mixers.data_attention(theta, phi))
  assert c.shape == (2, 3, 25, 25)
  np.testing.assert_allclose(c.sum(-1), 1.0, rtol=1e-5)
  n, p, w = 1, 2, 7
  logits = np.einsum('tve,te->v', theta[:, n, :, p], phi[:, n, w, p]) / (5 * 4)
  np.testing.assert_allclose(c[n, p, w], np.exp(logits) / np.exp(logits).sum(), rtol=1e-5)


def test_released_additive_mixer_is_eq_2_plus_data_attention_and_biases():
  h = _features((4, 2, 25, 6))
  mixer = mixers.AdditiveMixer(8, adjacency=A_HAT, released=True)
  params = mixer.init(jax.random.key(0), h)['params']
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(jax.random.key(1), a.shape), params)
  y = mixer.apply({'params': params}, h)

  def embed(name):
    e = params[name]
    return (h @ e['kernel'] + e['bias']).reshape(4, 2, 25, 3, 2)

  c = mixers.data_attention(embed('theta'), embed('phi'))  # (N, P, V, V)
  u = jnp.asarray(A_HAT) + params['M'] + c
  expected = sum(jnp.einsum('nwv,tnvc->tnwc', u[:, k], h) @ params['W'][k] + params['bias'][k]
                 for k in range(3))
  np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
