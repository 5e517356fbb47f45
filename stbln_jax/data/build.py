"""Builds `ntu_rgbd/<config>`, `pose_annotations/<config>` and `nw_ucla` records,
from Python.

Owns `build_dataset` (what `python -m data_prep.build` and demos call) and the
`BuildSummary` it returns: records per split, `.skeleton` files or annotations
excluded, ignored or skipped (with the reason), time taken; and what a dataset
name's records hold (`builder_config`, `preprocessing_of`, `channels_of`), which
prediction and export need without the dataset itself. No TensorFlow is imported.
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

# Importing the builders registers `ntu_rgbd`, `pose_annotations` and `nw_ucla`.
from stbln_jax.data import ntu_rgbd
from stbln_jax.data import nw_ucla
from stbln_jax.data import pose_annotations


def builder_config(dataset: str):
  """The builder config of a dataset name '<builder>/<config>[:version]'."""
  builder, _, name = dataset.partition('/')
  name = name.split(':')[0]
  if builder == 'ntu_rgbd':
    return ntu_rgbd.get_config(name)
  if builder == 'pose_annotations':
    return pose_annotations.get_config(name)
  if builder == 'nw_ucla':
    return nw_ucla.get_config(name)
  raise ValueError(f'{dataset!r} is not an ntu_rgbd, pose_annotations or nw_ucla '
                   'dataset')


def preprocessing_of(dataset: str) -> str | None:
  """The preprocessing of an `ntu_rgbd` dataset's raw files; None for annotation
  records (their 3D normalisation, if any, is in the dataset's metadata and a run's
  `config.preprocessing`) and NW-UCLA records (each clip as recorded)."""
  return getattr(builder_config(dataset), 'preprocessing', None)


def channels_of(dataset: str) -> str:
  """What the last axis of the dataset's samples holds (`preprocess.CHANNELS`)."""
  return getattr(builder_config(dataset), 'channels', 'xyz')


@dataclasses.dataclass(frozen=True)
class _Wording:
  """How a summary speaks of one builder's inputs."""

  found: str  # what is counted: '.skeleton files'
  rate: str  # their unit per second: 'files'
  ignored: str  # why some are ignored
  excluded: str | None  # the list some are excluded by (None: no such list)


_WORDING = {
    ntu_rgbd.NtuRgbd: _Wording('.skeleton files', 'files',
                               'action outside the config',
                               'official missing-skeleton list'),
    pose_annotations.PoseAnnotations: _Wording(
        'annotations', 'annotations', 'in no split', None),
    nw_ucla.NwUcla: _Wording('.json files', 'files', 'in no split', None),
}


@dataclasses.dataclass
class BuildSummary:
  """What one `build_dataset` call produced.

  Attributes:
    dataset: the TFDS name, e.g. 'ntu_rgbd/xview'.
    data_dir: the directory holding the records and dataset_info.json.
    examples: records per split, e.g. {'train': 37646, 'test': 18932}.
    num_files: `.skeleton` files (or annotations) found under the manual dir.
    num_parsed: files handed to the parser, or annotations converted
      (records + failures).
    excluded: samples left out because they are on the official
      missing-skeleton list.
    ignored: files of actions outside the config (e.g. A061+ for NTU-60), or
      annotations in no split.
    skipped: files or annotations (by frame_dir) that gave no record, each
      with the reason.
    elapsed_s: wall time of the build.
    reused: the dataset already existed and was not rebuilt (the file counts
      are then zero).
    splits_left_out: splits that gave no record, each with the reason.
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
  splits_left_out: list[pose_annotations.Skipped] = dataclasses.field(
      default_factory=list)
  wording: _Wording = _WORDING[ntu_rgbd.NtuRgbd]

  @property
  def files_per_s(self) -> float:
    """Files (or annotations) parsed and written, or skipped, per second of
    build time."""
    return self.num_parsed / self.elapsed_s if self.elapsed_s > 0 else 0.0

  def format(self) -> str:
    """A human-readable report, one fact per line."""
    lines = [f'{self.dataset} -> {self.data_dir}']
    if self.reused:
      lines.append('  already built; nothing done (use --overwrite to rebuild)')
    lines.append('  examples: ' + ', '.join(
        f'{split} {n:,}' for split, n in sorted(self.examples.items())))
    if not self.reused:
      words = self.wording
      lines.append(
          f'  {self.num_files:,} {words.found} found; {self.num_parsed:,} '
          f'parsed in {self.elapsed_s:.1f} s ({self.files_per_s:,.0f} '
          f'{words.rate}/s)')
      if words.excluded is not None:
        lines.append(f'  {len(self.excluded):,} excluded ({words.excluded})')
      if self.ignored:
        lines.append(f'  {self.ignored:,} ignored ({words.ignored})')
      lines.append(f'  {len(self.skipped):,} skipped'
                   + (':' if self.skipped else ''))
      lines.extend(f'    {s.path}: {s.reason}' for s in self.skipped)
      lines.extend(f'  split {s.path} left out: {s.reason}'
                   for s in self.splits_left_out)
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
    max_persons: int | None = None,
    normalization: pose_annotations.Normalization | None = None,
) -> BuildSummary:
  """Parses the raw data under `manual_dir` into `name`'s records.

  Args:
    name: 'ntu_rgbd/<config>' with config xview, xsub, xsub120 or xset120
      (each also `<config>_tracked`), 'pose_annotations/<layout>_<kind>'
      (e.g. 'pose_annotations/coco17_2d'; layout 'custom' reads the manual
      dir's layout.json), or 'nw_ucla' ('nw_ucla/xview').
    manual_dir: for ntu_rgbd, searched recursively for `.skeleton` files; for
      pose_annotations, a folder with one `.pkl` annotation file or an
      OpenPose JSON tree, optionally classes.txt, and layout.json for the
      custom configs; for nw_ucla, searched recursively for the `.json` clips
      (None: TFDS's default `<data_dir>/downloads/manual`).
    data_dir: TFDS data dir (None: `$TFDS_DATA_DIR` or ~/tensorflow_datasets).
    num_workers: processes parsing `.skeleton` files (None: all cores; 1:
      this process only); annotations are converted in this process.
    overwrite: rebuild even if the dataset exists.
    quiet: no progress bars.
    max_persons: pose_annotations: keep at most this many persons a sample
      (None: the most an annotation of the file has).
    normalization: pose_annotations '3d' configs: how to normalise the
      keypoints (None: as given).

  Returns:
    The `BuildSummary`; `str(summary.format())` is the report to print.
  """
  try:
    builder_cls = tfds.builder_cls(name.split('/')[0])
  except tfds.core.registered.DatasetNotFoundError:
    builder_cls = None
  if builder_cls not in _WORDING:
    raise ValueError(f'{name!r} is not an ntu_rgbd, pose_annotations or nw_ucla '
                     'config')
  if manual_dir is not None and not pathlib.Path(manual_dir).is_dir():
    raise FileNotFoundError(f'manual_dir {manual_dir} is not a directory')
  if manual_dir is not None and not any(pathlib.Path(manual_dir).iterdir()):
    raise FileNotFoundError(f'manual_dir {manual_dir} is empty')
  if builder_cls is pose_annotations.PoseAnnotations:
    kwargs = {'max_persons': max_persons, 'normalization': normalization}
  elif max_persons is not None or normalization is not None:
    raise ValueError(f'{name}: max_persons and a normalisation are options of the '
                     f'pose_annotations builder')
  else:
    kwargs = ({'num_workers': num_workers} if builder_cls is ntu_rgbd.NtuRgbd
              else {})
  builder = tfds.builder(name, data_dir=data_dir, **kwargs)
  mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  reused = builder.is_prepared() and not overwrite
  start = time.perf_counter()
  with contextlib.ExitStack() as stack:
    stack.enter_context(_progress_bars(not quiet))
    # TFDS prints that it is downloading (nothing: the data are local) and where
    # the dataset went; the summary says it.
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
      splits_left_out=list(getattr(report, 'splits_left_out', [])),
      wording=_WORDING[builder_cls],
  )
