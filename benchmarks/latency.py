r"""Latency of one streaming prediction: `python -m benchmarks.model --modes=latency`.

  python -m benchmarks.model --modes=latency --arch=lean,released --aggregate_at=6
  python -m benchmarks.model --modes=latency --arch=lean --window=64 --calls=200 --json

For each variant (architecture × mixer × λ × depth × temporal convolution) the network is
built from configs/default.py (60 classes, M = 2) with random variables, exported for a
fixed (1, window) input as `export.export_run` does (BNs folded, the single-person path
with the 'dft' convolution), serialised and deserialised: the path a deployed model
runs. Each is timed on a random input with two persons and on one whose second person is
absent (zeros). After `warmup` calls, `calls` calls are timed one by one (each waits for
its result): p50 and p99 milliseconds, predictions/s = 1000 / p50, and the median CPU
time per call (all of this process's threads; less sensitive than wall time to other
processes' load). With `preprocessing`, the first variant also times a
`stream.Recognizer` window on a real NTU file (one person: preprocessing + network). The
load average is printed before and after: the machine may be shared.
"""

import itertools
import json
import os
import platform
import time

import jax
import numpy as np

from configs import default
from stbln_jax import export
from stbln_jax import models
from stbln_jax import ops
from stbln_jax import serving
from stbln_jax import stream
from stbln_jax.data import skeleton as skeleton_lib

_SAMPLE = os.path.join(os.path.dirname(__file__), '..', 'tests', 'data', 'ntu_samples',
                       'S001C001P001R001A011.skeleton')


def exported_model(arch: str = 'released', aggregate_at: int | None = None,
                   temporal_conv: str = 'auto', window: int = 64, *, mixer: str = 'bilinear',
                   num_layers: int = 10) -> serving.ExportedModel:
  """A random network of configs/default.py, exported for (1, window) and reloaded."""
  cfg = default.get_config().model
  cfg.update(arch=arch, aggregate_at=aggregate_at, temporal_conv=temporal_conv, mixer=mixer,
             num_layers=num_layers)
  model, variables = export.inference_model(
      cfg, models.init_variables(models.create_model(cfg), cfg, jax.random.key(0)))
  shape = models.input_shape(cfg, 1, window)
  single = ops.resolve_temporal_conv(temporal_conv) == 'dft'  # as `export.export_run`
  exported, _ = export.export_forward(model, variables, shape, single_person_path=single)
  meta = {**serving.SIDECAR_DEFAULTS, 'input_shape': list(shape),
          'class_names': [str(i) for i in range(cfg.num_classes)],
          'preprocessing': '2s-agcn', 'stream': 'joint', 'layout': 'ntu25'}
  return serving.ExportedModel('<benchmark>', jax.export.deserialize(exported.serialize()),
                               meta)


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


def run(*, arch=('lean', 'released'), mixer=('bilinear',), aggregate_at=(6,),
        num_layers=(10,), temporal_conv=('auto',), window: int = 64, warmup: int = 10,
        calls: int = 200, preprocessing: bool = True, as_json: bool = False) -> list[dict]:
  """Times every variant and prints its rows (a table, or one JSON object per line)."""
  device = jax.devices()[0]
  print(f'# {device.platform} {device.device_kind}, {os.cpu_count()} CPUs, '
        f'{platform.machine()}; load average {os.getloadavg()}; jax {jax.__version__}')
  print(f'# batch 1, M=2, window {window} frames, {calls} timed calls')
  rows = []
  for a, mix, lam, depth, conv in itertools.product(arch, mixer, aggregate_at, num_layers,
                                                    temporal_conv):
    start = time.perf_counter()
    model = exported_model(a, lam, conv, window, mixer=mix, num_layers=depth)
    two = np.random.default_rng(0).normal(size=model.input_shape).astype(np.float32)
    one = two.copy()
    one[:, :, 1] = 0  # nobody as the second person: the single-person path
    model(two)  # compiles
    variant = {'arch': a, 'mixer': mix, 'aggregate_at': 'none' if lam is None else lam,
               'num_layers': depth, 'temporal_conv': conv,
               'compile_s': time.perf_counter() - start}
    first = not rows
    for what, x in (('network, 2 persons', two), ('network, 1 person', one)):
      rows.append(dict(variant, what=what,
                       **summary(time_calls(lambda: model(x), warmup, calls))))
      show(rows[-1], as_json)
    if preprocessing and first:
      predict = recognizer_window(model, window)
      rows.append(dict(variant, what='window of a 1-person file, all',
                       **summary(time_calls(predict, warmup, calls))))
      show(rows[-1], as_json)
  print(f'# load average after: {os.getloadavg()}')
  return rows


def show(row: dict, as_json: bool = False) -> None:
  if as_json:
    print(json.dumps(row), flush=True)
    return
  print(f"{row['arch']:<9} λ={row['aggregate_at']!s:<5} {row['temporal_conv']:<5} "
        f"{row['what']:<34} p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
        f"{row['predictions_per_s']:7.1f} /s  CPU {row['cpu_ms']:6.1f} ms  "
        f"(export + compile {row['compile_s']:.1f} s)", flush=True)
