r"""Throughput of the network: training-step and inference samples/s, FLOP/s.

    python -m stbln_jax.benchmark --batch=8 --frames=300 --persons=2
    python -m stbln_jax.benchmark --aggregate_at=none,6,7 --batch=8 --repeats=3
    python -m stbln_jax.benchmark --dtype=float32,bfloat16 --batch=64,128,256 --json

Every comma-separated flag is a list; the benchmark runs every combination one after
the other in this process, so variants are compared side by side on the same machine.

For each variant it compiles two jitted functions on random inputs:
  train  forward + backward + SGD (Nesterov momentum, weight decay) update, state donated
  infer  forward pass in evaluation mode (BN running statistics)
then times `--repeats` repeats of `--steps` calls each (blocking on the result after
each repeat) and reports the median. Compilation time is reported separately. FLOP/s
are the network's FLOPs per step divided by the measured step time: XLA's cost analysis
(a multiply-add is 2 FLOPs) of the same step with the direct temporal convolution, so
the figure does not change with `--temporal_conv` ('dft' and 'fft' compute the same
result with other multiply-adds). `train GB` is the memory XLA says the compiled
training step needs (arguments, outputs and temporaries). A mode that runs out of device
memory is reported as OOM (with the error in `--json`) and the next variant runs.

With `--reference`, each variant is timed next to the authors' ST-BLN in PyTorch
(`stbln_jax.torch_reference`, 55.9 GFLOPs per sample at T=300, M=2) at the same N, T and
M, the repeats of the two alternating, and the table adds the reference's samples/s and
our speedup over it (ratio of the medians): both see the same machine conditions. The
reference is always that 10-layer float32 network, whatever the variant's mixer, λ,
depth or dtype.

This path imports only jax, flax, optax, numpy and absl (no configuration library, no
data pipeline), so it runs on any machine with those installed; `--reference` also
needs PyTorch.
"""

import dataclasses
import itertools
import json
import os
import platform
import statistics
import time
from typing import Any, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import optax

from stbln_jax import cli
from stbln_jax import hostmem
from stbln_jax import models

_MIXER = flags.DEFINE_list('mixer', ['bilinear'], 'Spatial mixers (comma-separated).')
_AGGREGATE_AT = flags.DEFINE_list('aggregate_at', ['none'],
                                  "λ values (comma-separated; 'none': no aggregation).")
_BATCH = flags.DEFINE_list('batch', ['8'], 'Batch sizes N (comma-separated).')
_FRAMES = flags.DEFINE_list('frames', ['300'], 'Frames T per sample (comma-separated).')
_PERSONS = flags.DEFINE_list('persons', ['2'], 'Persons M per sample (comma-separated).')
_NUM_LAYERS = flags.DEFINE_list('num_layers', ['10'], 'Network depths (comma-separated).')
_DTYPE = flags.DEFINE_list('dtype', ['float32'],
                           'Compute dtypes, float32 and/or bfloat16 (comma-separated).')
_TEMPORAL_CONV = flags.DEFINE_list('temporal_conv', ['auto'],
                                   'Temporal convolution implementations: auto, dft, fft, dots, xla.')
_MODES = flags.DEFINE_list('modes', ['train', 'infer'], 'What to time: train and/or infer.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repeats per variant (median reported).')
_STEPS = flags.DEFINE_integer('steps', 2, 'Steps per timed repeat.')
_WARMUP = flags.DEFINE_integer('warmup', 1, 'Untimed steps after compilation.')
_JSON = flags.DEFINE_bool('json', False, 'Print one JSON list instead of a table.')
_REFERENCE = flags.DEFINE_bool(
    'reference', False, "Also time the authors' PyTorch ST-BLN at each variant's N, T, M, "
    'alternating repeats with ours, and report the speedup (needs PyTorch).')


# ---- Configuration ---------------------------------------------------------------

class ModelConfig(dict):
  """A `config.model` without a configuration library: attribute access and `get`."""

  def __getattr__(self, name):
    try:
      return self[name]
    except KeyError as e:
      raise AttributeError(name) from e


def model_config(mixer: str = 'bilinear', aggregate_at: int | None = None,
                 num_layers: int = 10, num_persons: int = 2, dtype: str = 'float32',
                 **overrides) -> ModelConfig:
  """The paper's network (configs/default.py's model fields) with a few fields changed."""
  cfg = ModelConfig(
      mixer=mixer,
      channels=(64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
      strides=(1, 1, 1, 1, 2, 1, 1, 2, 1, 1),
      num_layers=num_layers,
      aggregate_at=aggregate_at,
      symmetric_rank=None,
      temporal_kernel=9,
      adjacency_normalization='symmetric',
      num_classes=60,
      num_persons=num_persons,
      num_joints=25,
      in_channels=3,
      dtype=dtype,
      temporal_conv='auto',
  )
  cfg.update(overrides)
  return cfg


@dataclasses.dataclass(frozen=True)
class Variant:
  mixer: str = 'bilinear'
  aggregate_at: int | None = None
  batch: int = 8
  frames: int = 300
  persons: int = 2
  num_layers: int = 10
  dtype: str = 'float32'
  temporal_conv: str = 'auto'

  def model_config(self) -> ModelConfig:
    return model_config(self.mixer, self.aggregate_at, self.num_layers, self.persons, self.dtype,
                        temporal_conv=self.temporal_conv)


# ---- The measured functions ------------------------------------------------------

def make_train_step(model, learning_rate: float = 0.1):
  """A jitted training step over a state dict, the state donated."""
  tx = optax.chain(optax.add_decayed_weights(1e-4),
                   optax.sgd(learning_rate, momentum=0.9, nesterov=True))

  def init_state(variables):
    return {'params': variables['params'], 'batch_stats': variables['batch_stats'],
            'opt_state': tx.init(variables['params'])}

  def loss_fn(params, batch_stats, x, labels):
    logits, updates = model.apply({'params': params, 'batch_stats': batch_stats}, x,
                                  train=True, mutable=['batch_stats'])
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    return loss, updates['batch_stats']

  def train_step(state, x, labels):
    (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['params'], state['batch_stats'], x, labels)
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    return {'params': params, 'batch_stats': batch_stats, 'opt_state': opt_state}, loss

  return init_state, jax.jit(train_step, donate_argnums=0)


def make_infer_step(model):
  return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def _flops(lowered) -> float:
  analysis = lowered.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per computation
    analysis = analysis[0]
  return float(analysis.get('flops', 0.0)) if analysis else 0.0


def _memory_gb(compiled) -> float | None:
  """Device memory the compiled step needs: arguments, outputs and temporaries, in GB."""
  try:
    m = compiled.memory_analysis()
  except Exception:  # not every backend reports it  # pylint: disable=broad-except
    return None
  if m is None:
    return None
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes) / 1e9


def _out_of_memory(error: Exception) -> bool:
  text = str(error)
  return 'RESOURCE_EXHAUSTED' in text or 'out of memory' in text.lower()


def _time_calls(calls: Sequence, repeats: int, steps: int, warmup: int) -> list[list[float]]:
  """Seconds per call, for each call of `calls`, of `repeats` repeats of `steps` calls.

  After `warmup` untimed calls each, the calls take turns repeat by repeat, so that
  each sees the same machine conditions.
  """
  for call in calls:
    for _ in range(warmup):
      jax.block_until_ready(call())
  times = [[] for _ in calls]
  for _ in range(repeats):
    for call, call_times in zip(calls, times):
      start = time.perf_counter()
      out = None
      for _ in range(steps):
        out = call()
      jax.block_until_ready(out)
      call_times.append((time.perf_counter() - start) / steps)
  return times


def _reference_steps(variant: Variant, num_classes: int):
  """(model, train_call, infer_call, info) of the PyTorch reference at the variant's shape."""
  try:
    from stbln_jax import torch_reference
  except ImportError as e:
    raise SystemExit(f'--reference: {e}') from e
  return torch_reference.make_steps(variant.batch, variant.frames, variant.persons,
                                    num_classes)


def run_variant(variant: Variant, *, modes: Sequence[str] = ('train', 'infer'),
                repeats: int = 3, steps: int = 2, warmup: int = 1, seed: int = 0,
                reference: bool = False) -> dict:
  """Compiles and times one variant; returns one row of measurements.

  With `reference`, the PyTorch reference is timed at the same shape, alternating
  repeats with ours (`reference_*` entries and our `*_speedup` over it).
  """
  cfg = variant.model_config()
  model = models.create_model(cfg)
  shape = models.input_shape(cfg, variant.batch, variant.frames)
  rng_x, rng_y, rng_init = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(rng_x, shape, jnp.float32)
  labels = jax.random.randint(rng_y, (variant.batch,), 0, cfg.num_classes)
  variables = models.init_variables(model, cfg, rng_init)
  # FLOPs are the network's (direct convolution), whichever implementation runs: the
  # frequency-domain convolutions do other numbers of multiply-adds for the same result.
  direct = model.clone(temporal_conv='xla')
  row: dict[str, Any] = dataclasses.asdict(variant)
  row['params'] = int(sum(p.size for p in jax.tree.leaves(variables['params'])))
  ref_calls = {}
  if reference:
    _, ref_train, ref_infer, info = _reference_steps(variant, cfg.num_classes)
    ref_calls = {'train': ref_train, 'infer': ref_infer}
    row.update({f'reference_{k}': v for k, v in info.items()})

  def timed(mode: str, call) -> float:
    """Median seconds per step of ours (and of the reference, into `row`)."""
    calls = [call] + ([ref_calls[mode]] if ref_calls else [])
    times = _time_calls(calls, repeats, steps, warmup)
    step_s = statistics.median(times[0])
    if ref_calls:
      ref_s = statistics.median(times[1])
      row[f'reference_{mode}_samples_per_s'] = variant.batch / ref_s
      row[f'{mode}_speedup'] = ref_s / step_s
    return step_s

  def measure(mode: str, compile_fn, call_fn, flops_fn) -> None:
    """Compiles and times one mode into `row`; out of device memory, says so instead."""
    try:
      start = time.perf_counter()
      compiled = compile_fn()
      row[f'{mode}_compile_s'] = time.perf_counter() - start
      row[f'{mode}_memory_gb'] = _memory_gb(compiled)
      flops = flops_fn()
      step_s = timed(mode, call_fn(compiled))
    except jax.errors.JaxRuntimeError as e:
      if not _out_of_memory(e):
        raise
      row[f'{mode}_error'] = 'out of memory: ' + str(e).strip().splitlines()[0][:300]
      return
    row.update({f'{mode}_step_s': step_s, f'{mode}_samples_per_s': variant.batch / step_s,
                f'{mode}_gflops_per_sample': flops / variant.batch / 1e9,
                f'{mode}_gflop_per_s': flops / step_s / 1e9})

  if 'infer' in modes:
    infer = make_infer_step(model)
    measure('infer', lambda: infer.lower(variables, x).compile(),
            lambda compiled: lambda: compiled(variables, x),
            lambda: _flops(make_infer_step(direct).lower(variables, x)))

  if 'train' in modes:
    init_state, train_step = make_train_step(model)
    # The step donates its state: give it copies, so `variables` stays usable.
    state = init_state(jax.tree.map(jnp.copy, variables))
    holder = {'state': state}

    def train_call(compiled):
      def call():
        holder['state'], loss = compiled(holder['state'], x, labels)
        return loss
      return call

    measure('train', lambda: train_step.lower(state, x, labels).compile(), train_call,
            lambda: _flops(make_train_step(direct)[1].lower(state, x, labels)))
  return row


# ---- Report ----------------------------------------------------------------------

def machine() -> dict:
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  device = jax.devices()[0]
  return {'jax': jax.__version__, 'backend': jax.default_backend(),
          'device': getattr(device, 'device_kind', str(device)),
          'cpu': cpu, 'nproc': os.cpu_count(),
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def _cell(row: dict, key: str, width: int, digits: int) -> str:
  """A number right-aligned in `width`; 'OOM' where that mode ran out of memory."""
  mode = key.split('_', 1)[0]
  if f'{mode}_error' in row and key not in row:
    return f"{'OOM':>{width}}"
  value = row.get(key)
  return f"{float('nan') if value is None else value:>{width}.{digits}f}"


def format_table(rows: list[dict]) -> str:
  head = (f"{'mixer':<10}{'λ':>5}{'L':>4}{'conv':>6}{'dtype':>10}{'N':>5}{'T':>5}{'M':>3}"
          f"{'train/s':>10}{'infer/s':>10}{'train GF/s':>12}{'infer GF/s':>12}"
          f"{'fwd GF/smp':>12}{'train GB':>10}{'compile s':>11}")
  lines = [head, '-' * len(head)]
  for r in rows:
    lam = '-' if r['aggregate_at'] is None else str(r['aggregate_at'])
    compile_s = r.get('train_compile_s', 0.0) + r.get('infer_compile_s', 0.0)
    lines.append(
        f"{r['mixer']:<10}{lam:>5}{r['num_layers']:>4}{r['temporal_conv']:>6}{r['dtype']:>10}{r['batch']:>5}"
        f"{r['frames']:>5}{r['persons']:>3}"
        + _cell(r, 'train_samples_per_s', 10, 2) + _cell(r, 'infer_samples_per_s', 10, 2)
        + _cell(r, 'train_gflop_per_s', 12, 1) + _cell(r, 'infer_gflop_per_s', 12, 1)
        + _cell(r, 'infer_gflops_per_sample', 12, 2) + _cell(r, 'train_memory_gb', 10, 2)
        + f'{compile_s:>11.1f}')
  if any('reference_params' in r for r in rows):
    # The PyTorch reference at the same shape, and our speedup over it.
    lines[0] += f"{'ref train/s':>13}{'ref infer/s':>13}{'× train':>9}{'× infer':>9}"
    lines[1] = '-' * len(lines[0])
    for i, r in enumerate(rows, start=2):
      lines[i] += (f"{r.get('reference_train_samples_per_s', float('nan')):>13.2f}"
                   f"{r.get('reference_infer_samples_per_s', float('nan')):>13.2f}"
                   f"{r.get('train_speedup', float('nan')):>9.2f}"
                   f"{r.get('infer_speedup', float('nan')):>9.2f}")
  return '\n'.join(lines)


def _aggregate_at(value: str) -> int | None:
  return None if value.lower() in ('none', '-', '') else int(value)


def variants_from_flags() -> list[Variant]:
  return [Variant(mixer, _aggregate_at(lam), int(n), int(t), int(m), int(depth), dtype, conv)
          for mixer, lam, n, t, m, depth, dtype, conv in itertools.product(
              _MIXER.value, _AGGREGATE_AT.value, _BATCH.value, _FRAMES.value,
              _PERSONS.value, _NUM_LAYERS.value, _DTYPE.value, _TEMPORAL_CONV.value)]


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  hostmem.retain_freed_memory()
  rows = []
  info = machine()
  if not _JSON.value:
    print(' '.join(f'{k}={v}' for k, v in info.items()))
  for variant in variants_from_flags():
    row = run_variant(variant, modes=_MODES.value, repeats=_REPEATS.value, steps=_STEPS.value,
                      warmup=_WARMUP.value, reference=_REFERENCE.value)
    rows.append(row)
    if not _JSON.value:
      print(format_table([row]).splitlines()[-1] if len(rows) > 1 else format_table([row]),
            flush=True)
  if _JSON.value:
    print(json.dumps({'machine': info, 'rows': rows}))


if __name__ == '__main__':
  cli.run(main, input_errors=(models.ConfigError,))
