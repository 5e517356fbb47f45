r"""Data benchmarks on synthetic NTU files: build speed and pipeline speed.

  python -m benchmarks.data build --workdir=/tmp/stbln_data_benchmark
  python -m benchmarks.data pipeline --workdir=/tmp/stbln_data_benchmark

`build` writes real-format synthetic `.skeleton` files once (--frames=90,110
by default: NTU-sized, one or two bodies), then times `build_dataset` of
--dataset (`ntu_rgbd/xview`) end to end (listing, parsing in --num_processes
workers, serialising, writing, shuffling). Besides files/s it reports where
the CPU goes: the parser's time per file (measured in this process on a
sample) and the main process's (TFDS encoding and writing), so that runs on a
busy machine can still be compared; the load average says how busy it was.

`pipeline` times `input_pipeline.train_batches` alone on that dataset (built
first if missing) for each --streams, at --batch_size and --num_frames,
after one warm-up batch: samples/s, and CPU time per sample of this process.
"""

import math
import os
import pathlib
import resource
import time

from absl import app
from absl import flags
from absl import logging

from configs import default
from stbln_jax import cli
from stbln_jax import input_pipeline
from stbln_jax.data import build
from stbln_jax.data import ntu_rgbd
from stbln_jax.data import preprocess
from stbln_jax.data import synthetic

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program, so importing this module never
  # clashes with another command's flags of the same name.
  flags.DEFINE_string(
      'workdir', '/tmp/stbln_data_benchmark',
      'Holds raw-*/ (synthetic files, reused) and tfds/ (the built dataset).')
  flags.DEFINE_string(
      'dataset', 'ntu_rgbd/xview',
      'The ntu_rgbd config to build, e.g. ntu_rgbd/xview_tracked.')
  flags.DEFINE_integer(
      'num_files', 1440,
      'Synthetic files to build from (rounded up to whole subjects of 72).')
  flags.DEFINE_list('frames', ['90', '110'],
                    'Min and max frames of a synthetic file.')
  flags.DEFINE_integer(
      'num_processes', None, 'Parsing processes (default: all cores).')
  flags.DEFINE_integer(
      'parse_sample', 100, 'Files parsed in this process to time the parser.')
  flags.DEFINE_integer('batch_size', 64, 'Pipeline batch size.')
  flags.DEFINE_integer('num_frames', 300, 'Padded length T.')
  flags.DEFINE_list('streams', ['joint', 'bone'],
                    'Streams to time in the pipeline.')
  flags.DEFINE_integer(
      'num_batches', 100, 'Batches timed per stream (epochs repeat as needed).')
  flags.DEFINE_integer(
      'worker_count', 0, 'Grain worker processes (0: load in this process).')


# Files per synthetic subject: 12 actions x 3 cameras x 2 replications.
_FILES_PER_SUBJECT = 72


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _load() -> str:
  return '/'.join(f'{x:.1f}' for x in os.getloadavg())


def _raw_files() -> list[pathlib.Path]:
  """The synthetic files, written on first use."""
  subjects = math.ceil(FLAGS.num_files / _FILES_PER_SUBJECT)
  frames = tuple(int(f) for f in FLAGS.frames)
  raw = (pathlib.Path(FLAGS.workdir) /
         f'raw-{subjects}subjects-{frames[0]}-{frames[1]}frames')
  stamp = raw / '.complete'
  if not stamp.exists():
    print(f'Writing {subjects * _FILES_PER_SUBJECT} synthetic files to {raw} '
          '(once)...', flush=True)
    synthetic.write_synthetic_dataset(
        raw, num_classes=12, subjects=tuple(range(1, subjects + 1)),
        frames=frames, seed=0)
    stamp.touch()
  return sorted(raw.glob('*.skeleton'))


def _data_dir() -> str:
  return os.path.join(FLAGS.workdir, 'tfds')


def benchmark_build() -> build.BuildSummary:
  """Times one full build; prints throughput and the CPU split."""
  files = _raw_files()
  sample = files[:FLAGS.parse_sample]
  preprocessing = ntu_rgbd.get_config(
      FLAGS.dataset.split('/')[-1]).preprocessing
  start = _cpu_seconds()
  for path in sample:
    preprocess.preprocess_skeleton(path, preprocessing)
  parse_ms = (_cpu_seconds() - start) / len(sample) * 1e3
  size_kb = sum(p.stat().st_size for p in sample) / len(sample) / 1e3

  load_before = _load()
  start = _cpu_seconds()
  summary = build.build_dataset(
      FLAGS.dataset, manual_dir=os.path.dirname(files[0]),
      data_dir=_data_dir(),
      num_workers=FLAGS.num_processes, overwrite=True, quiet=True)
  main_ms = (_cpu_seconds() - start) / summary.num_parsed * 1e3
  workers = FLAGS.num_processes or os.cpu_count()

  print(summary.format())
  print(f'build: {summary.num_parsed} files ({size_kb:.0f} KB on average) in '
        f'{summary.elapsed_s:.1f} s = {summary.files_per_s:.0f} files/s with '
        f'{workers} parsing processes on {os.cpu_count()} cores')
  print(f'  CPU per file: parser {parse_ms:.2f} ms (in one process), main '
        f'process {main_ms:.2f} ms (TFDS encoding, writing, bookkeeping)')
  print(f'  load average before/after: {load_before} / {_load()}')
  return summary


def benchmark_pipeline() -> None:
  """Times `train_batches` per stream; prints samples/s."""
  config = default.get_config()
  config.dataset = FLAGS.dataset
  config.data_dir = _data_dir()
  config.batch_size = FLAGS.batch_size
  config.num_frames = FLAGS.num_frames
  config.worker_count = FLAGS.worker_count
  try:
    steps = input_pipeline.steps_per_epoch(config)
  except FileNotFoundError:
    benchmark_build()
    steps = input_pipeline.steps_per_epoch(config)
  print(f'pipeline: {FLAGS.dataset} train, {steps} batches of '
        f'{config.batch_size} per epoch, T={config.num_frames}, '
        f'{config.worker_count} grain workers, load {_load()}')
  for stream in FLAGS.streams:
    config.stream = stream
    epoch, seen, timed = 0, 0, None
    while seen < FLAGS.num_batches:
      for batch in input_pipeline.train_batches(
          config, epoch=epoch, process_index=0, process_count=1):
        if timed is None:  # the first batch pays for start-up
          timed = time.perf_counter(), _cpu_seconds()
          continue
        seen += 1
        if seen == FLAGS.num_batches:
          break
      epoch += 1
    wall = time.perf_counter() - timed[0]
    cpu = _cpu_seconds() - timed[1]
    samples = seen * config.batch_size
    print(f'  {stream:12s} {samples / wall:8,.0f} samples/s '
          f'({wall / seen * 1e3:.1f} ms per batch; this process '
          f'{cpu / samples * 1e6:.0f} us CPU per sample)', flush=True)


def main(argv):
  if len(argv) != 2 or argv[1] not in ('build', 'pipeline'):
    raise app.UsageError('usage: python -m benchmarks.data build|pipeline '
                         '[--flags]')
  logging.set_verbosity(logging.WARNING)  # TFDS logs every dataset opening
  if argv[1] == 'build':
    benchmark_build()
  else:
    benchmark_pipeline()


if __name__ == '__main__':
  _define_flags()
  cli.run(main)
