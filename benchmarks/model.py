r"""Throughput of the network: training-step and inference samples/s, FLOP/s; latency.

    python -m benchmarks.model --batch=8 --frames=300 --persons=2
    python -m benchmarks.model --arch=released,lean --batch=16 --frames=64 --persons=1
    python -m benchmarks.model --aggregate_at=none,6,7 --batch=8 --repeats=3
    python -m benchmarks.model --batch=8 --frames=300 --persons=2 --repeats=5 --reference
    python -m benchmarks.model --dtype=float32,bfloat16 --batch=64,128,256 --json
    python -m benchmarks.model --modes=latency --arch=lean,released --aggregate_at=6

Every comma-separated flag is a list; the benchmark runs every combination one after
the other in this process, so variants are compared side by side on the same machine.
A variant is configs/default.py with its model fields (`--arch`, `--mixer`, ...), batch
size and frame count changed.

For each variant it compiles two jitted functions on random inputs:
  train  the trainer's step (`stbln_jax.train.make_train_step`: forward + backward +
         the training recipe's SGD update, state donated), on one device
  infer  forward pass in evaluation mode (BN running statistics)
then times `--repeats` repeats of `--steps` calls each (blocking on the result after
each repeat) and reports the median (`--json` also lists every repeat's seconds per
step). Compilation time is reported separately. FLOP/s are the network's FLOPs per step
divided by the measured step time: XLA's cost analysis (a multiply-add is 2 FLOPs) of the
same step with the direct temporal convolution, so the figure does not change with
`--temporal_conv`. `train GB` is the memory XLA says the compiled training step needs
(arguments, outputs and temporaries). A mode that runs out of device memory is reported
as OOM (with the error in `--json`) and the next variant runs. The machine line gives
the load average at the start.

With `--reference`, each variant is timed next to the PyTorch network of the same
architecture (`benchmarks.torch_reference`: the authors' released ST-BLN, 2s-AGCN or
ST-GCN for `--arch=released` with the bilinear, additive or multiplicative mixer, the
same depth; with `--dtype=bfloat16` under PyTorch's CPU autocast to bfloat16) at the
same N, T and M, the repeats of the two alternating, and
the table adds its samples/s and our speedup over it (ratio of the medians): both see
the same machine conditions. The lean architecture, the symmetric mixer and λ have no
PyTorch twin; their rows say `none`. `--reference` needs PyTorch.

`--modes=latency` times one streaming prediction instead (`benchmarks.latency`): batch 1,
a `--window`-frame input, through the exported network, `--calls` calls one by one after
`--warmup` ones, p50/p99 ms per prediction, for every `--arch`, `--mixer`, `--aggregate_at`,
`--num_layers` and `--temporal_conv` (M = 2, configs/default.py otherwise).
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
import ml_collections

from benchmarks import latency
from configs import default
from stbln_jax import cli
from stbln_jax import models
from stbln_jax import sharding
from stbln_jax import train

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a command, so that importing the module defines none.
  flags.DEFINE_list('arch', ['released'], 'Architectures: released and/or lean.')
  flags.DEFINE_list('mixer', ['bilinear'], 'Spatial mixers (comma-separated).')
  flags.DEFINE_list('aggregate_at', ['none'],
                    "λ values (comma-separated; 'none': no aggregation).")
  flags.DEFINE_list('batch', ['8'], 'Batch sizes N (comma-separated).')
  flags.DEFINE_list('frames', ['300'], 'Frames T per sample (comma-separated).')
  flags.DEFINE_list('persons', ['2'], 'Persons M per sample (comma-separated).')
  flags.DEFINE_list('num_layers', ['10'], 'Network depths (comma-separated).')
  flags.DEFINE_list('dtype', ['float32'],
                    'Compute dtypes, float32 and/or bfloat16 (comma-separated).')
  flags.DEFINE_list('temporal_conv', ['auto'],
                    'Temporal convolution implementations (config.model.'
                    'temporal_conv), comma-separated.')
  flags.DEFINE_list('modes', ['train', 'infer'],
                    'What to time: train and/or infer, or latency (batch 1, exported).')
  flags.DEFINE_integer('repeats', 3, 'Timed repeats per variant (median reported).')
  flags.DEFINE_integer('steps', 2, 'Steps per timed repeat.')
  flags.DEFINE_integer('warmup', 1, 'Untimed steps after compilation.')
  flags.DEFINE_bool('json', False, 'Print one JSON list instead of a table (latency: one '
                    'JSON object per line).')
  flags.DEFINE_integer('window', 64, 'latency: frames per prediction.', lower_bound=1)
  flags.DEFINE_integer('calls', 200, 'latency: timed calls per variant.', lower_bound=1)
  flags.DEFINE_bool('preprocessing', True,
                    'latency: also time a stream.Recognizer window on a real file.')
  flags.DEFINE_bool(
      'reference', False, 'Also time the PyTorch network of the same architecture at each '
      "variant's N, T, M, alternating repeats with ours, and report the speedup (needs "
      'PyTorch).')


# ---- Configuration ---------------------------------------------------------------

# The mixers whose released network exists in PyTorch (benchmarks/torch_reference.py).
TWINS = {'bilinear': 'STBLN', 'additive': 'AGCN', 'multiplicative': 'STGCN'}


def model_config(**fields) -> ml_collections.ConfigDict:
  """configs/default.py's `config.model` with some fields changed."""
  model = default.get_config().model
  model.update(fields)
  return model


@dataclasses.dataclass(frozen=True)
class Variant:
  arch: str = 'released'
  mixer: str = 'bilinear'
  aggregate_at: int | None = None
  batch: int = 8
  frames: int = 300
  persons: int = 2
  num_layers: int = 10
  dtype: str = 'float32'
  temporal_conv: str = 'auto'

  def config(self) -> ml_collections.ConfigDict:
    """configs/default.py with this variant's model fields, batch size and frames."""
    config = default.get_config()
    config.model = model_config(arch=self.arch, mixer=self.mixer,
                                aggregate_at=self.aggregate_at, num_layers=self.num_layers,
                                num_persons=self.persons, dtype=self.dtype,
                                temporal_conv=self.temporal_conv)
    config.batch_size = self.batch
    config.num_frames = self.frames
    return config

  def reference(self) -> str | None:
    """The PyTorch network of the same architecture, or None where there is none."""
    if self.arch != 'released' or self.aggregate_at is not None:
      return None
    return TWINS.get(self.mixer)


# ---- The measured functions ------------------------------------------------------

def make_train_step(model, config: ml_collections.ConfigDict):
  """(optimizer, mesh, the trainer's jitted step) on one device, the state donated."""
  mesh = sharding.make_mesh(jax.devices()[:1])
  schedule = train.learning_rate_schedule(config, steps_per_epoch=1_000_000)
  optimizer = train.make_optimizer(config, schedule)
  return optimizer, mesh, train.make_train_step(model, optimizer, schedule, mesh)


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


def reference_kwargs(variant: Variant, config: ml_collections.ConfigDict) -> dict:
  """`torch_reference.make_steps` arguments for the PyTorch twin at the variant's shape."""
  lr = config.base_learning_rate * config.batch_size / config.base_batch_size
  return dict(mixer=variant.mixer, batch=variant.batch, frames=variant.frames,
              persons=variant.persons, num_classes=config.model.num_classes,
              num_layers=variant.num_layers, learning_rate=lr,
              weight_decay=config.weight_decay, dtype=variant.dtype)


def torch_reference_module():
  try:
    from benchmarks import torch_reference
  except ImportError as e:
    raise SystemExit(f'--reference: {e}') from e
  return torch_reference


def run_variant(variant: Variant, *, modes: Sequence[str] = ('train', 'infer'),
                repeats: int = 3, steps: int = 2, warmup: int = 1, seed: int = 0,
                reference: bool = False) -> dict:
  """Compiles and times one variant; returns one row of measurements.

  With `reference`, the PyTorch network of the same architecture is timed at the same
  shape, alternating repeats with ours (`reference_*` entries and our `*_speedup` over
  it); `reference_network` is None where there is no such network.
  """
  config = variant.config()
  model = models.create_model(config.model)
  shape = models.input_shape(config.model, variant.batch, variant.frames)
  rng_x, rng_y = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(rng_x, shape, jnp.float32)
  labels = jax.random.randint(rng_y, (variant.batch,), 0, config.model.num_classes)
  # FLOPs are the network's (direct convolution), whichever implementation runs: the
  # frequency-domain convolutions do other numbers of multiply-adds for the same result.
  direct_config = variant.config()
  direct_config.model.temporal_conv = 'xla'
  direct = models.create_model(direct_config.model)
  optimizer, mesh, train_step = make_train_step(model, config)
  state = train.create_train_state(model, config, optimizer, mesh,
                                   jax.random.key(seed, impl='rbg'))
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  row: dict[str, Any] = dataclasses.asdict(variant)
  row['params'] = int(sum(p.size for p in jax.tree.leaves(variables['params'])))
  ref_calls, ref = {}, None
  if reference:
    row['reference_network'] = variant.reference()
    if row['reference_network'] is not None:
      ref = torch_reference_module().StepsInProcess(**reference_kwargs(variant, config))
      ref_calls = {'train': ref.train, 'infer': ref.infer}
      row.update({f'reference_{k}': v for k, v in ref.info.items() if k != 'network'})

  def timed(mode: str, call) -> float:
    """Median seconds per step of ours (and of the reference, into `row`)."""
    calls = [call] + ([ref_calls[mode]] if ref_calls else [])
    times = _time_calls(calls, repeats, steps, warmup)
    step_s = statistics.median(times[0])
    row[f'{mode}_repeats_s'] = times[0]
    if ref_calls:
      ref_s = statistics.median(times[1])
      row[f'reference_{mode}_repeats_s'] = times[1]
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

  try:
    if 'infer' in modes:
      infer = make_infer_step(model)
      measure('infer', lambda: infer.lower(variables, x).compile(),
              lambda compiled: lambda: compiled(variables, x),
              lambda: _flops(make_infer_step(direct).lower(variables, x)))

    if 'train' in modes:
      batch = {'skeleton': x, 'label': labels}
      # The step donates its state: keep `state` for lowering, give the step a copy.
      holder = {'state': jax.tree.map(jnp.copy, state)}

      def train_call(compiled):
        def call():
          holder['state'], measurements = compiled(holder['state'], batch)
          return measurements['loss']
        return call

      measure('train', lambda: train_step.lower(state, batch).compile(), train_call,
              lambda: _flops(make_train_step(direct, direct_config)[2].lower(state, batch)))
  finally:
    if ref is not None:
      ref.close()
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
          'cpu': cpu, 'nproc': os.cpu_count(), 'loadavg': [round(x, 2) for x in os.getloadavg()],
          'xla_flags': os.environ.get('XLA_FLAGS', '')}


def _cell(row: dict, key: str, width: int, digits: int) -> str:
  """A number right-aligned in `width`; 'OOM' where that mode ran out of memory."""
  mode = key.split('_', 1)[0]
  if f'{mode}_error' in row and key not in row:
    return f"{'OOM':>{width}}"
  value = row.get(key)
  return f"{float('nan') if value is None else value:>{width}.{digits}f}"


def _ref_cell(row: dict, key: str, width: int) -> str:
  if row.get('reference_network') is None:
    return f"{'-':>{width}}"
  return f"{row.get(key, float('nan')):>{width}.2f}"


def format_table(rows: list[dict]) -> str:
  head = (f"{'arch':<9}{'mixer':<15}{'λ':>3}{'L':>4}{'conv':>6}{'dtype':>10}{'N':>5}{'T':>5}"
          f"{'M':>3}{'train/s':>10}{'infer/s':>10}{'train GF/s':>12}{'infer GF/s':>12}"
          f"{'fwd GF/smp':>12}{'train GB':>10}{'compile s':>11}")
  lines = [head, '-' * len(head)]
  for r in rows:
    lam = '-' if r['aggregate_at'] is None else str(r['aggregate_at'])
    compile_s = r.get('train_compile_s', 0.0) + r.get('infer_compile_s', 0.0)
    lines.append(
        f"{r['arch']:<9}{r['mixer']:<15}{lam:>3}{r['num_layers']:>4}{r['temporal_conv']:>6}"
        f"{r['dtype']:>10}{r['batch']:>5}{r['frames']:>5}{r['persons']:>3}"
        + _cell(r, 'train_samples_per_s', 10, 2) + _cell(r, 'infer_samples_per_s', 10, 2)
        + _cell(r, 'train_gflop_per_s', 12, 1) + _cell(r, 'infer_gflop_per_s', 12, 1)
        + _cell(r, 'infer_gflops_per_sample', 12, 2) + _cell(r, 'train_memory_gb', 10, 2)
        + f'{compile_s:>11.1f}')
  if any('reference_network' in r for r in rows):
    # The PyTorch network of the same architecture at the same shape ('none': there is
    # no such network), and our speedup over it.
    lines[0] += f"{'ref':>7}{'ref train/s':>13}{'ref infer/s':>13}{'× train':>9}{'× infer':>9}"
    lines[1] = '-' * len(lines[0])
    for i, r in enumerate(rows, start=2):
      lines[i] += (f"{r.get('reference_network') or 'none':>7}"
                   + _ref_cell(r, 'reference_train_samples_per_s', 13)
                   + _ref_cell(r, 'reference_infer_samples_per_s', 13)
                   + _ref_cell(r, 'train_speedup', 9) + _ref_cell(r, 'infer_speedup', 9))
  return '\n'.join(lines)


NO_TWIN_NOTE = ("ref none: no PyTorch network of that architecture (the authors' released "
                "ST-BLN, 2s-AGCN and ST-GCN are arch=released without λ)")


def _aggregate_at(value: str) -> int | None:
  return None if value.lower() in ('none', '-', '') else int(value)


def variants_from_flags() -> list[Variant]:
  return [Variant(arch, mixer, _aggregate_at(lam), int(n), int(t), int(m), int(depth), dtype,
                  conv)
          for arch, mixer, lam, n, t, m, depth, dtype, conv in itertools.product(
              FLAGS.arch, FLAGS.mixer, FLAGS.aggregate_at, FLAGS.batch, FLAGS.frames,
              FLAGS.persons, FLAGS.num_layers, FLAGS.dtype, FLAGS.temporal_conv)]


MODES = ('train', 'infer', 'latency')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  unknown = sorted(set(FLAGS.modes) - set(MODES))
  if unknown:
    raise app.UsageError(f'--modes: unknown {unknown}; choose from {MODES}')
  if 'latency' in FLAGS.modes:
    latency.run(arch=FLAGS.arch, mixer=FLAGS.mixer,
                aggregate_at=[_aggregate_at(lam) for lam in FLAGS.aggregate_at],
                num_layers=[int(k) for k in FLAGS.num_layers],
                temporal_conv=FLAGS.temporal_conv, window=FLAGS.window, warmup=FLAGS.warmup,
                calls=FLAGS.calls, preprocessing=FLAGS.preprocessing, as_json=FLAGS.json)
  modes = [m for m in FLAGS.modes if m != 'latency']
  if not modes:
    return
  rows = []
  info = machine()
  if not FLAGS.json:
    print(' '.join(f'{k}={v}' for k, v in info.items()))
  for variant in variants_from_flags():
    row = run_variant(variant, modes=modes, repeats=FLAGS.repeats, steps=FLAGS.steps,
                      warmup=FLAGS.warmup, reference=FLAGS.reference)
    rows.append(row)
    if not FLAGS.json:
      print(format_table([row]).splitlines()[-1] if len(rows) > 1 else format_table([row]),
            flush=True)
  if not FLAGS.json and any(r.get('reference_network', '') is None for r in rows):
    print(NO_TWIN_NOTE)
  if FLAGS.json:
    print(json.dumps({'machine': info, 'rows': rows}))


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(models.ConfigError,))
