"""Builds `ntu_rgbd/<config>` records from raw `.skeleton` files, from Python.

Owns `build_dataset` (what `python -m data_prep.build` and demos call) and the
`BuildSummary` it returns: records per split, files excluded, ignored or
skipped (with the reason), time taken. No TensorFlow is imported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pathlib
import time

import tensorflow_datasets as tfds
from tensorflow_datasets.core.utils import tqdm_utils

from stbln_jax.data import ntu_rgbd  # registers the `ntu_rgbd` builder


@dataclasses.dataclass
class BuildSummary:
  """What one `build_dataset` call produced.

  Attributes:
    dataset: the TFDS name, e.g. 'ntu_rgbd/xview'.
    data_dir: the directory holding the records and dataset_info.json.
    examples: records per split, e.g. {'train': 37646, 'test': 18932}.
    num_files: `.skeleton` files found under the manual dir.
    num_parsed: files handed to the parser (records + parse failures).
    excluded: samples left out because they are on the official
      missing-skeleton list.
    ignored: files of actions outside the config (e.g. A061+ for NTU-60).
    skipped: files that gave no record, each with the reason.
    elapsed_s: wall time of the build.
    reused: the dataset already existed and was not rebuilt (the file counts
      are then zero).
  """

  dataset: str
  data_dir: str
  examples: dict[str, int]
  num_files: int
  num_parsed: int
  excluded: list[str]
  ignored: int
  skipped: list[ntu_rgbd.SkippedFile]
  elapsed_s: float
  reused: bool

  @property
  def files_per_s(self) -> float:
    """Files parsed and written (or skipped) per second of build time."""
    return self.num_parsed / self.elapsed_s if self.elapsed_s > 0 else 0.0

  def format(self) -> str:
    """A human-readable report, one fact per line."""
    lines = [f'{self.dataset} -> {self.data_dir}']
    if self.reused:
      lines.append('  already built; nothing done (use --overwrite to rebuild)')
    lines.append('  examples: ' + ', '.join(
        f'{split} {n:,}' for split, n in sorted(self.examples.items())))
    if not self.reused:
      lines.append(
          f'  {self.num_files:,} .skeleton files found; {self.num_parsed:,} '
          f'parsed in {self.elapsed_s:.1f} s ({self.files_per_s:,.0f} files/s)')
      lines.append(f'  {len(self.excluded):,} excluded (official '
                   'missing-skeleton list)')
      if self.ignored:
        lines.append(f'  {self.ignored:,} ignored (action outside the config)')
      lines.append(f'  {len(self.skipped):,} skipped'
                   + (':' if self.skipped else ''))
      lines.extend(f'    {s.path}: {s.reason}' for s in self.skipped)
    return '\n'.join(lines)


@contextlib.contextmanager
def _progress_bars(enabled: bool):
  """Turns TFDS's progress bars on or off, then back to what they were."""
  before = getattr(tqdm_utils, '_active', True)
  tfds.display_progress_bar(enabled)
  try:
    yield
  finally:
    tfds.display_progress_bar(before)


def build_dataset(
    name: str,
    *,
    manual_dir: os.PathLike[str] | str | None,
    data_dir: os.PathLike[str] | str | None = None,
    num_workers: int | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> BuildSummary:
  """Parses the `.skeleton` files under `manual_dir` into `name`'s records.

  Args:
    name: 'ntu_rgbd/<config>' with config xview, xsub, xsub120 or xset120.
    manual_dir: searched recursively for `.skeleton` files (None: TFDS's
      default `<data_dir>/downloads/manual`).
    data_dir: TFDS data dir (None: `$TFDS_DATA_DIR` or ~/tensorflow_datasets).
    num_workers: parsing processes (None: all cores; 1: this process only).
    overwrite: rebuild even if the dataset exists.
    quiet: no progress bars and no TFDS messages on stdout.

  Returns:
    The `BuildSummary`; `str(summary.format())` is the report to print.
  """
  if manual_dir is not None and not pathlib.Path(manual_dir).is_dir():
    raise FileNotFoundError(f'manual_dir {manual_dir} is not a directory')
  builder = tfds.builder(name, data_dir=data_dir, num_workers=num_workers)
  if not isinstance(builder, ntu_rgbd.NtuRgbd):
    raise ValueError(f'{name!r} is not an ntu_rgbd config')
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  reused = builder.is_prepared() and not overwrite
  start = time.perf_counter()
  with contextlib.ExitStack() as stack:
    stack.enter_context(_progress_bars(not quiet))
    if quiet:
      stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=None if manual_dir is None else os.fspath(manual_dir),
        download_mode=mode))
  elapsed = time.perf_counter() - start
  report = builder.report
  return BuildSummary(
      dataset=f'{builder.name}/{builder.builder_config.name}',
      data_dir=os.fspath(builder.data_dir),
      examples={split: info.num_examples
                for split, info in builder.info.splits.items()},
      num_files=report.num_files,
      num_parsed=report.num_parsed,
      excluded=list(report.excluded),
      ignored=report.ignored,
      skipped=sorted(report.skipped, key=lambda s: s.path),
      elapsed_s=elapsed,
      reused=reused,
  )
