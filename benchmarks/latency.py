r"""Latency of one streaming prediction: batch 1, one window, through the exported network.

  python -m benchmarks.latency
  python -m benchmarks.latency --arch=lean,released --aggregate_at=6,none --window=64 --json

For each variant (architecture × λ × temporal convolution) the network is built from
configs/default.py (10 layers, bilinear, 60 classes, M = 2) with random variables,
exported for a fixed (1, window) input as `export.export_run` does (the single-person
path with the 'dft' convolution), serialised and deserialised: the path a deployed model runs. Each is timed on a
random input with two persons and on one whose second person is absent (zeros). After
--warmup calls, --calls calls are timed one by one (each waits for its result): p50 and
p99 milliseconds, predictions/s = 1000 / p50, and the median CPU time per call (all of
this process's threads; less sensitive than wall time to other processes' load).
`--preprocessing` also times a `stream.Recognizer` window on a real NTU file
(one person: preprocessing + network) with the first variant. The load average is printed: the
machine may be shared.
"""

import json
import os
import platform
import time

from absl import app
from absl import flags
import jax
import numpy as np

from configs import default
from stbln_jax import export
from stbln_jax import cli
from stbln_jax import models
from stbln_jax import ops
from stbln_jax import serving
from stbln_jax import stream
from stbln_jax.data import skeleton as skeleton_lib

FLAGS = flags.FLAGS
_SAMPLE = os.path.join(os.path.dirname(__file__), '..', 'tests', 'data', 'ntu_samples',
                       'S001C001P001R001A011.skeleton')


def _define_flags():
  flags.DEFINE_list('arch', ['lean', 'released'], 'Architectures.')
  flags.DEFINE_list('aggregate_at', ['6'], "λ values ('none': no aggregation).")
  flags.DEFINE_list('temporal_conv', ['auto'], "Temporal convolutions ('auto', 'dft', 'xla').")
  flags.DEFINE_integer('window', 64, 'Frames per prediction.')
  flags.DEFINE_integer('warmup', 10, 'Untimed calls first.')
  flags.DEFINE_integer('calls', 200, 'Timed calls.')
  flags.DEFINE_bool('preprocessing', True, 'Also time a Recognizer window on a real file.')
  flags.DEFINE_bool('json', False, 'One JSON object per line instead of the table.')


def exported_model(arch: str, aggregate_at: int | None, temporal_conv: str,
                   window: int) -> serving.ExportedModel:
  cfg = default.get_config().model
  cfg.arch, cfg.aggregate_at, cfg.temporal_conv = arch, aggregate_at, temporal_conv
  model = models.create_model(cfg)
  variables = models.init_variables(model, cfg, jax.random.key(0))
  shape = models.input_shape(cfg, 1, window)
  single = ops.resolve_temporal_conv(temporal_conv) == 'dft'  # as `export.export_run`
  data = export.export_forward(model, variables, shape, single_person_path=single).serialize()
  meta = {'input_shape': list(shape), 'class_names': [str(i) for i in range(cfg.num_classes)],
          'preprocessing': '2s-agcn', 'stream': 'joint'}
  return serving.ExportedModel('<benchmark>', jax.export.deserialize(data), meta)


def time_calls(fn, warmup: int, calls: int) -> tuple[np.ndarray, np.ndarray]:
  """Wall and process CPU milliseconds of each of `calls` calls, after `warmup` calls."""
  for _ in range(warmup):
    fn()
  wall, cpu = np.empty(calls), np.empty(calls)
  for i in range(calls):
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    wall[i], cpu[i] = time.perf_counter() - start, time.process_time() - start_cpu
  return 1e3 * wall, 1e3 * cpu


def summary(times_ms: tuple[np.ndarray, np.ndarray]) -> dict:
  """p50/p99 wall ms, predictions/s at p50, and the median CPU ms (all threads) per call."""
  wall, cpu = times_ms
  p50, p99 = np.percentile(wall, [50, 99])
  return {'p50_ms': float(p50), 'p99_ms': float(p99), 'predictions_per_s': 1e3 / float(p50),
          'cpu_ms': float(np.median(cpu))}


def recognizer_window(model: serving.ExportedModel, window: int):
  """A Recognizer holding the first `window` frames of a real file, and its predict call."""
  recognizer = stream.Recognizer(model, window=window, hop=window)
  skeleton = skeleton_lib.read_skeleton(_SAMPLE, np.float64, xyz_only=True)
  for bodies, ids in stream.frames_of(skeleton):
    recognizer.push(bodies, ids)
    if recognizer.frames_seen == window:
      break
  return recognizer.predict_window


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  device = jax.devices()[0]
  print(f'# {device.platform} {device.device_kind}, {os.cpu_count()} CPUs, '
        f'{platform.machine()}; load average {os.getloadavg()}; jax {jax.__version__}')
  print(f'# batch 1, M=2, window {FLAGS.window} frames, {FLAGS.calls} timed calls')
  rows = []
  for arch in FLAGS.arch:
    for lam in FLAGS.aggregate_at:
      for conv in FLAGS.temporal_conv:
        aggregate_at = None if lam == 'none' else int(lam)
        start = time.perf_counter()
        model = exported_model(arch, aggregate_at, conv, FLAGS.window)
        two = np.random.default_rng(0).normal(size=model.input_shape).astype(np.float32)
        one = two.copy()
        one[:, :, 1] = 0  # nobody as the second person: the single-person path
        model(two)  # compiles
        compile_s = time.perf_counter() - start
        first = not rows
        for what, x in (('network, 2 persons', two), ('network, 1 person', one)):
          row = {'arch': arch, 'aggregate_at': lam, 'temporal_conv': conv, 'what': what,
                 'compile_s': compile_s,
                 **summary(time_calls(lambda: model(x), FLAGS.warmup, FLAGS.calls))}
          rows.append(row)
          _show(row)
        if FLAGS.preprocessing and first:
          predict = recognizer_window(model, FLAGS.window)
          row = dict(row, what='window of a 1-person file, all',
                     **summary(time_calls(predict, FLAGS.warmup, FLAGS.calls)))
          rows.append(row)
          _show(row)
  print(f'# load average after: {os.getloadavg()}')


def _show(row: dict) -> None:
  if FLAGS.json:
    print(json.dumps(row))
  else:
    print(f"{row['arch']:<9} λ={row['aggregate_at']:<5} {row['temporal_conv']:<5} "
          f"{row['what']:<34} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
          f"{row['predictions_per_s']:7.1f} /s  CPU {row['cpu_ms']:6.1f} ms  (export + compile {row['compile_s']:.1f} s)",
          flush=True)


if __name__ == '__main__':
  _define_flags()
  cli.run(main, input_errors=(models.ConfigError,))
