r"""Where a training (or inference) step spends its time, ours and PyTorch's side by side.

    python -m benchmarks.profile --batch=16 --frames=64 --persons=1
    python -m benchmarks.profile --batch=8 --frames=300 --persons=2 --mode=infer --top=30
    python -m benchmarks.profile --batch=16 --frames=64 --persons=1 --reference=false

Ours: the step of `benchmarks.model` (configs/default.py with `--arch`, `--dtype`,
`--temporal_conv`), traced with `jax.profiler` over `--steps` steps. Every operation XLA
ran is attributed to the layer and part of the network its HLO instruction comes from
(the op_name metadata: `layer_3/temporal/...`; the backward pass is under
`transpose(jvp(...))`) and to a kind of work (a matrix product or convolution, a copy, an
elementwise fusion, a reduction), from the compiled HLO.

PyTorch (`--reference`): the authors' network of `benchmarks.torch_reference` at the same
shape, each module timed forward and backward with hooks (PyTorch runs synchronously on
CPU), then one step under `torch.profiler` for the time per ATen operation.

Times are milliseconds per step. XLA may run two independent operations at once, so the
parts of our step can add up to more than its wall time.
"""

import collections
import glob
import re
import tempfile
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp

from benchmarks import model as model_benchmark
from stbln_jax import cli
from stbln_jax import models
from stbln_jax import train

FLAGS = flags.FLAGS

PARTS = ('mixer', 'residual_v', 'temporal', 'residual_t', 'bn', 'elementwise', 'other')


def _define_flags():
  flags.DEFINE_string('arch', 'released', 'Architecture.')
  flags.DEFINE_integer('batch', 16, 'N.')
  flags.DEFINE_integer('frames', 64, 'T.')
  flags.DEFINE_integer('persons', 1, 'M.')
  flags.DEFINE_string('dtype', 'float32', 'Compute dtype.')
  flags.DEFINE_string('temporal_conv', 'auto', 'config.model.temporal_conv.')
  flags.DEFINE_enum('mode', 'train', ['train', 'infer'], 'What to profile.')
  flags.DEFINE_integer('steps', 3, 'Profiled steps (after one warm-up step).')
  flags.DEFINE_integer('top', 15, 'Operations listed per side.')
  flags.DEFINE_bool('reference', True, "Also profile the authors' network in PyTorch.")


# ---- Ours: the compiled HLO and the profiler's trace -----------------------------

_INSTRUCTION = re.compile(r'\s*(?:ROOT\s+)?%?([^\s=]+) = (.*)$')
_COMPUTATION = re.compile(r'%?([^\s(]+) .*\{$')
_COPIES = {'copy', 'transpose', 'bitcast', 'reshape', 'slice', 'concatenate', 'pad',
           'broadcast', 'parameter', 'tuple', 'get-tuple-element', 'constant',
           'dynamic-slice', 'dynamic-update-slice', 'iota'}


def _opcode(rest: str) -> str:
  """The opcode of an HLO instruction's right-hand side (after its shape)."""
  match = re.search(r'(?:^|\s)([a-z][\w-]*)\(', rest)
  return match.group(1) if match else '?'


def hlo_instructions(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name → (kind of work, op_name metadata) of a compiled module's text."""
  computations: dict[str, set] = {}
  instructions = {}
  current = None
  for line in hlo_text.splitlines():
    if line.endswith('{') and ' = ' not in line:
      match = _COMPUTATION.match(line.strip().removeprefix('ENTRY '))
      current = computations.setdefault(match.group(1) if match else '?', set())
      continue
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    name, rest = match.groups()
    opcode = _opcode(rest)
    if current is not None:
      current.add(opcode)
    op_name = re.search(r'op_name="([^"]*)"', rest)
    called = re.search(r'calls=%?([\w.-]+)', rest)
    instructions[name] = (opcode, called.group(1) if called else None,
                          op_name.group(1) if op_name else '')
  out = {}
  for name, (opcode, called, op_name) in instructions.items():
    ops = computations.get(called, set()) if called else {opcode}
    if ops & {'dot', 'convolution', 'custom-call'} or 'ynn' in name or 'xnn' in name:
      kind = 'matmul'
    elif ops & {'reduce', 'reduce-window'}:
      kind = 'reduce'
    elif ops <= _COPIES:
      kind = 'copy'
    else:
      kind = 'elementwise'
    out[name] = (kind, op_name)
  return out


def where(op_name: str) -> tuple[str, str]:
  """(layer, part) of an op_name like .../transpose(jvp(...))/layer_3/mixer/dot_general."""
  match = re.search(r'/layer_(\d+)/([^/]+)(?:/([^/]+))?', op_name)
  if not match:
    return '-', 'other'
  layer, module, sub = match.groups()
  if module in ('mixer', 'temporal'):
    part = module
  elif module.startswith('bn') or sub == 'bn':
    part = 'bn'
  elif module in ('residual_v', 'residual_t'):
    part = module
  else:
    part = 'elementwise'
  return layer, part


def profile_ours(call, compiled, steps: int) -> tuple[list[dict], float]:
  """Every operation of `steps` calls: [{name, kind, layer, part, dir, ms}], wall ms/step."""
  instructions = hlo_instructions(compiled.as_text())
  jax.block_until_ready(call())
  logdir = tempfile.mkdtemp(prefix='stbln_profile_')
  start = time.perf_counter()
  with jax.profiler.trace(logdir):
    for _ in range(steps):
      jax.block_until_ready(call())
  wall = (time.perf_counter() - start) / steps * 1e3
  path = glob.glob(f'{logdir}/**/*.xplane.pb', recursive=True)[0]
  data = jax.profiler.ProfileData.from_file(path)
  # Custom gradients (`ops.rows_matmul`, `ops.BatchNorm`) keep the forward pass's
  # op_name, so an operation counts as backward when it starts after the step's first
  # matrix product whose op_name says backward (XLA runs the backward pass after the
  # loss; small constants of the backward pass may come earlier).
  runs = collections.defaultdict(list)
  for plane in data.planes:
    for line in plane.lines:
      for event in line.events:
        stats = dict(event.stats)
        if stats.get('hlo_op') in instructions:
          runs[stats.get('run_id')].append((event.start_ns, event.duration_ns,
                                             stats['hlo_op']))
  totals = collections.Counter()
  for events in runs.values():
    backward = min((start for start, _, name in events
                    if instructions[name][0] == 'matmul'
                    and 'transpose(' in instructions[name][1]), default=float('inf'))
    for start, duration, name in events:
      totals[(name, 'bwd' if start >= backward else 'fwd')] += duration / 1e6 / steps
  ops = []
  for (name, direction), ms in totals.items():
    kind, op_name = instructions[name]
    if kind == 'elementwise' and name.startswith(('conditional', 'while', 'call')):
      continue  # holds other operations, timed themselves
    layer, part = where(op_name)
    ops.append(dict(name=name, kind=kind, layer=layer, part=part, dir=direction, ms=ms,
                    op_name=op_name))
  return ops, wall


def ours(variant: model_benchmark.Variant, mode: str, steps: int):
  config = variant.config()
  model = models.create_model(config.model)
  shape = models.input_shape(config.model, variant.batch, variant.frames)
  x = jax.random.normal(jax.random.key(0), shape, jnp.float32)
  labels = jnp.zeros((variant.batch,), jnp.int32)
  optimizer, mesh, train_step = model_benchmark.make_train_step(model, config)
  state = train.create_train_state(model, config, optimizer, mesh,
                                   jax.random.key(0, impl='rbg'))
  if mode == 'infer':
    variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
    compiled = model_benchmark.make_infer_step(model).lower(variables, x).compile()
    return profile_ours(lambda: compiled(variables, x), compiled, steps)
  batch = {'skeleton': x, 'label': labels}
  compiled = train_step.lower(state, batch).compile()
  holder = {'state': jax.tree.map(jnp.copy, state)}

  def call():
    holder['state'], measurements = compiled(holder['state'], batch)
    return measurements['loss']
  return profile_ours(call, compiled, steps)


# ---- PyTorch ---------------------------------------------------------------------

def _torch_part(path: str, module) -> str:
  """The part of a torch_reference leaf module, named as ours are."""
  from torch import nn
  if isinstance(module, nn.modules.batchnorm._BatchNorm):
    return 'bn'
  for key, part in (('.g_conv.', 'mixer'), ('.bln_residual.', 'residual_v'),
                    ('.tcn.', 'temporal'), ('.residual.', 'residual_t')):
    if key in path:
      return part
  return 'other'


def reference(variant: model_benchmark.Variant, mode: str, steps: int, top: int):
  """(parts, wall ms/step, ATen operations) of the PyTorch network at the same shape.

  parts: (layer, part, direction) → ms per step. A layer's leaf modules (convolutions,
  BNs) are timed with hooks; what the spatial step does itself (the products with U,
  the sum over partitions, its residual add and ReLU) counts as 'mixer', what the layer
  does itself (the last add and ReLU) as 'elementwise'.
  """
  import torch
  config = variant.config()
  torch_reference = model_benchmark.torch_reference_module()
  network, train_call, infer_call, _ = torch_reference.make_steps(
      **model_benchmark.reference_kwargs(variant, config))
  call = train_call if mode == 'train' else infer_call
  times = collections.Counter()
  opened = {}

  def timer(key):
    def begin(*_):
      opened[key] = time.perf_counter()

    def end(*_):
      times[key] += time.perf_counter() - opened.pop(key)
    return begin, end

  handles, owner = [], {}
  for path, module in network.named_modules():
    depth = path.count('.')
    if not path.startswith('layers.layer') or depth < 1:
      continue
    leaf = not list(module.children())
    if not (leaf or depth <= 2):
      continue  # Sequential containers: their leaves are timed
    layer = path.split('.')[1].removeprefix('layer')
    if leaf:
      owner[path] = (layer, _torch_part(path, module))
    directions = ('fwd', 'bwd') if mode == 'train' else ('fwd',)
    for direction in directions:
      begin, end = timer((path, direction))
      if direction == 'fwd':
        handles += [module.register_forward_pre_hook(begin),
                    module.register_forward_hook(end)]
      else:
        handles += [module.register_full_backward_pre_hook(begin),
                    module.register_full_backward_hook(end)]
  call()
  times.clear()
  start = time.perf_counter()
  for _ in range(steps):
    call()
  wall = (time.perf_counter() - start) / steps * 1e3
  for handle in handles:
    handle.remove()
  timed = {path for path, _ in times}
  parent = {path: max((q for q in timed if path.startswith(q + '.')), key=len, default=None)
            for path in timed}
  own = {key: seconds * 1e3 / steps for key, seconds in times.items()}
  for (path, direction), seconds in times.items():
    if parent[path] is not None:
      own[(parent[path], direction)] -= seconds * 1e3 / steps
  parts = collections.Counter()
  for (path, direction), ms in own.items():
    layer = path.split('.')[1].removeprefix('layer')
    if path in owner:
      part = owner[path][1]
    elif path.count('.') == 1:
      part = 'elementwise'  # the layer's last add and ReLU
    elif path.endswith(('.bln', '.gcn')):
      part = 'mixer'  # the products with U, the sum over partitions, add and ReLU
    else:
      part = 'other'
    parts[(layer, part, direction)] += ms
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    call()
  table = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=top)
  return parts, wall, table


# ---- Report ----------------------------------------------------------------------

def _layer_table(rows: dict, layers: list[str], title: str) -> str:
  head = f"{title:<12}" + ''.join(f'{p:>12}' for p in PARTS) + f"{'total':>10}"
  lines = [head, '-' * len(head)]
  for layer in layers:
    cells = [rows.get((layer, p), 0.0) for p in PARTS]
    lines.append(f'{layer:<12}' + ''.join(f'{c:>12.1f}' for c in cells)
                 + f'{sum(cells):>10.1f}')
  totals = [sum(rows.get((layer, p), 0.0) for layer in layers) for p in PARTS]
  lines.append(f"{'all':<12}" + ''.join(f'{c:>12.1f}' for c in totals) + f'{sum(totals):>10.1f}')
  return '\n'.join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  variant = model_benchmark.Variant(arch=FLAGS.arch, batch=FLAGS.batch, frames=FLAGS.frames,
                                    persons=FLAGS.persons, dtype=FLAGS.dtype,
                                    temporal_conv=FLAGS.temporal_conv)
  print(' '.join(f'{k}={v}' for k, v in model_benchmark.machine().items()))
  print(f'{variant}, {FLAGS.mode}, ms per step\n')
  ops, wall = ours(variant, FLAGS.mode, FLAGS.steps)
  directions = ('fwd', 'bwd') if FLAGS.mode == 'train' else ('fwd',)
  layers = sorted({o['layer'] for o in ops if o['layer'] != '-'}, key=int) + ['-']
  for direction in directions:
    rows = collections.Counter()
    for o in ops:
      if o['dir'] == direction:
        rows[(o['layer'], o['part'])] += o['ms']
    print(_layer_table(rows, layers, f'ours {direction}'), '\n')
  kinds = collections.Counter()
  for o in ops:
    kinds[(o['dir'], o['kind'])] += o['ms']
  print(f'ours: wall {wall:.1f} ms per step, operations {sum(o["ms"] for o in ops):.1f} ms;',
        ', '.join(f'{d} {k} {ms:.1f}' for (d, k), ms in sorted(kinds.items())))
  print(f'\nours, the {FLAGS.top} longest operations:')
  for o in sorted(ops, key=lambda o: -o['ms'])[:FLAGS.top]:
    print(f"{o['ms']:9.1f}  {o['kind']:<12}{o['dir']:<5}layer {o['layer']:<3}{o['part']:<12}"
          f"{o['name']}")
  if not FLAGS.reference or variant.reference() is None:
    return
  parts, ref_wall, table = reference(variant, FLAGS.mode, FLAGS.steps, FLAGS.top)
  print()
  ref_layers = sorted({k[0] for k in parts}, key=int)
  for direction in directions:
    rows = {(layer, part): ms for (layer, part, d), ms in parts.items() if d == direction}
    print(_layer_table(rows, ref_layers, f'torch {direction}'), '\n')
  print(f'PyTorch: wall {ref_wall:.1f} ms per step (timed with the hooks)\n')
  print(table)


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
