r"""Parameters and forward cost per sample of a configured network (the paper's Fig. 5).

    python -m stbln_jax.flops --config=configs/cv.py
    python -m stbln_jax.flops --config=configs/cv.py --config.model.aggregate_at=6 --json
    python -m stbln_jax.flops --config=configs/cv.py --sweep_aggregate_at
    python -m stbln_jax.flops --config=configs/cv.py --config.model.arch=lean --sweep_aggregate_at

Two figures of the inference forward pass (batch 1, T frames, M persons), both from
tracing and lowering it (nothing is compiled or run):
- `flops`: XLA's cost analysis of the whole computation (a multiply-add is 2 FLOPs), the
  direct convolution ('xla') standing for whichever implementation runs;
- `macs`: multiply-adds counted as `thop` counts them, which is how the paper's figures
  were made: only the layers PyTorch would hold as nn.Conv2d or nn.Linear modules
  (output size × fan-in, biases not counted); products written as functions (U·H,
  2s-AGCN's attention) and BatchNorm are not counted.
"""

import json
from typing import Mapping

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
from ml_collections import config_flags

from stbln_jax import cli
from stbln_jax import models

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program, so importing this module (tests, other
  # commands) never clashes with another command's flags of the same name.
  config_flags.DEFINE_config_file('config', None, 'Configuration file.', lock_config=True)
  flags.DEFINE_integer('num_frames', 300, 'Frames T per sample.')
  flags.DEFINE_bool('json', False, 'Print one JSON object (a list with --sweep_aggregate_at).')
  flags.DEFINE_bool('sweep_aggregate_at', False,
                    'Report the bilinear model for λ = 1..L and without aggregation.')


def count_params(params) -> int:
  return int(sum(x.size for x in jax.tree.leaves(params)))


def _thop_counter(counts: list):
  """An interceptor adding, per call of a module with a 'kernel' (or a mixer's 'W'),

  output size × fan-in (the kernel's size over its output features) to `counts`: what
  thop counts for the nn.Conv2d / nn.Linear the module stands for. A mixer's W, (P, C_in,
  C_out), stands for P 1×1 convolutions whose outputs are summed.
  """

  def count(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and hasattr(y, 'size'):
      params = context.module.variables.get('params', {})
      kernel = params.get('kernel', params.get('W'))
      if kernel is not None and not isinstance(kernel, Mapping):
        counts.append(y.size * (kernel.size // kernel.shape[-1]))
    return y

  return count


def model_cost(model_cfg, num_frames: int = 300) -> dict:
  """{'params', 'flops', 'gflops', 'macs', 'gmacs', ...} of one sample's forward pass."""
  # The direct convolution: the network's FLOPs, not those of a faster equivalent.
  model = models.create_model(model_cfg).clone(temporal_conv='xla')
  x = jax.ShapeDtypeStruct(models.input_shape(model_cfg, 1, num_frames), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  counts = []

  def forward(v, x):
    with nn.intercept_methods(_thop_counter(counts)):
      return model.apply(v, x, train=False)

  analysis = jax.jit(forward).lower(variables, x).cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX returns one dict per computation
    analysis = analysis[0]
  flops = float(analysis['flops'])
  macs = int(sum(counts))
  return {
      'mixer': model_cfg.mixer,
      'arch': model.arch,
      'num_layers': model_cfg.num_layers,
      'aggregate_at': model_cfg.aggregate_at,
      'num_frames': num_frames,
      'num_persons': model_cfg.num_persons,
      'params': count_params(variables['params']),
      'flops': flops,
      'gflops': flops / 1e9,
      'macs': macs,
      'gmacs': macs / 1e9,
  }


def sweep_aggregate_at(model_cfg, num_frames: int = 300) -> list[dict]:
  """Fig. 5: the bilinear network for every λ in 1..L, then without aggregation."""
  rows = []
  cfg = model_cfg.copy_and_resolve_references()
  cfg.mixer = 'bilinear'
  for lam in list(range(1, cfg.num_layers + 1)) + [None]:
    cfg.aggregate_at = lam
    rows.append(model_cost(cfg, num_frames))
  reference = next(r for r in rows if r['aggregate_at'] == cfg.num_layers)
  for r in rows:
    r['speedup_vs_last_layer'] = reference['macs'] / r['macs']  # Fig. 5: thop's count
    r['flops_speedup_vs_last_layer'] = reference['flops'] / r['flops']
  return rows


def format_table(rows: list[dict]) -> str:
  head = f"{'mixer':<15}{'arch':<10}{'λ':>4}{'params':>12}{'XLA GFLOPs':>12}{'GMACs':>9}"
  if 'speedup_vs_last_layer' in rows[0]:
    head += f"{'× MACs':>9}{'× FLOPs':>9}"
  lines = [head, '-' * len(head)]
  for r in rows:
    lam = '-' if r['aggregate_at'] is None else str(r['aggregate_at'])
    line = (f"{r['mixer']:<15}{r['arch']:<10}{lam:>4}{r['params']:>12,}{r['gflops']:>12.2f}"
            f"{r['gmacs']:>9.2f}")
    if 'speedup_vs_last_layer' in r:
      line += f"{r['speedup_vs_last_layer']:>9.2f}{r['flops_speedup_vs_last_layer']:>9.2f}"
    lines.append(line)
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.config is None:
    raise app.UsageError('--config is required, e.g. --config=configs/cv.py')
  model_cfg = FLAGS.config.model
  if FLAGS.sweep_aggregate_at:
    rows = sweep_aggregate_at(model_cfg, FLAGS.num_frames)
  else:
    rows = [model_cost(model_cfg, FLAGS.num_frames)]
  if FLAGS.json:
    print(json.dumps(rows if FLAGS.sweep_aggregate_at else rows[0]))
  else:
    print(f'Forward pass per sample: batch 1, T={FLAGS.num_frames}, M={model_cfg.num_persons}; '
          f'XLA GFLOPs: cost analysis (1 multiply-add = 2 FLOPs); GMACs: multiply-adds '
          f'of the conv and linear layers, as thop counts them (the paper)')
    print(format_table(rows))


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(models.ConfigError,))
