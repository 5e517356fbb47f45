r"""Builds skeleton records (TFDS, array_record), without TensorFlow.

  python -m data_prep.build ntu_rgbd/xview \
      --manual_dir=/data/nturgbd_skeletons --data_dir=/data/tfds
  python -m data_prep.build pose_annotations/coco17_2d \
      --manual_dir=/data/ntu60_hrnet --data_dir=/data/tfds
  python -m data_prep.build nw_ucla --manual_dir=/data/all_sqe --data_dir=/data/tfds

ntu_rgbd: NTU RGB+D from raw `.skeleton` files found recursively. Configs:
xview, xsub (NTU-60), xsub120, xset120 (NTU-120), preprocessed exactly as
2s-AGCN does; each also as `<config>_tracked`, with bodies followed by
tracking ID (`stbln_jax.data.preprocess`).

pose_annotations: one PYSKL/MMAction2 annotation pickle, or an OpenPose JSON
tree `<split>/<class>/<clip>/*_keypoints.json`, in the manual dir, with an
optional classes.txt (one class name a line). Configs `<layout>_<kind>`:
layout ntu25, coco17 or openpose18, or custom for the skeleton of a
layout.json beside the pickle (`stbln_jax.data.layouts`); kind 3d (x, y, z),
2d (x, y normalised by the frame size, and the score) or 2d_xy
(`stbln_jax.data.annotations`). A sample keeps as many persons as the file's
most crowded annotation has (--max_persons caps them); 3d keypoints are kept as
given unless --centre (and --align) normalise them:

  python -m data_prep.build pose_annotations/custom_3d --manual_dir=/data/mine \
      --centre=every_frame --align=hip,spine,left_shoulder,right_shoulder

nw_ucla: NW-UCLA's json clips (`all_sqe/`) found recursively, the cross-view
split (config xview, the default), each clip as recorded
(`stbln_jax.data.nw_ucla`).

Flags follow `tfds build` where they apply (--data_dir, --manual_dir,
--overwrite, --num_processes); --num_processes sets the processes
parsing `.skeleton` files (`tfds build` uses it for building several datasets
at once). Several datasets may be given. Each build ends with a summary:
records per split, files (or annotations) excluded, ignored and skipped, and
why.

With TensorFlow installed, `tfds build --imports stbln_jax.data.ntu_rgbd
ntu_rgbd/xview --manual_dir=...` builds the same records (likewise
`--imports stbln_jax.data.pose_annotations` or `stbln_jax.data.nw_ucla`).
"""

from absl import app
from absl import flags
from absl import logging

from stbln_jax import cli
from stbln_jax.data import annotations
from stbln_jax.data import build

FLAGS = flags.FLAGS


def _define_flags():
  # Defined only when run as a program, so importing this module never
  # clashes with another command's flags of the same name.
  flags.DEFINE_string(
      'data_dir', None,
      'Where to place datasets (default: $TFDS_DATA_DIR or '
      '~/tensorflow_datasets).')
  flags.DEFINE_string(
      'manual_dir', None,
      'ntu_rgbd: folder searched recursively for .skeleton files; '
      'pose_annotations: folder with one .pkl annotation file or an OpenPose '
      'JSON tree, and optionally classes.txt; nw_ucla: folder searched '
      'recursively for the .json clips (default: <data_dir>/downloads/manual).')
  flags.DEFINE_bool(
      'overwrite', False, 'Delete and rebuild a dataset that already exists.')
  flags.DEFINE_integer(
      'num_processes', None,
      'Processes parsing .skeleton files (default: all cores).', lower_bound=1)
  flags.DEFINE_bool(
      'quiet', False,
      'No progress bars or progress logs; print only the summary.')
  flags.DEFINE_integer(
      'max_persons', None,
      'pose_annotations: persons kept a sample, those of highest score (2D) or '
      'most motion (default: as many as the most an annotation has; OpenPose: '
      '2).', lower_bound=1)
  flags.DEFINE_enum(
      'centre', None, annotations.CENTRINGS,
      'pose_annotations *_3d: subtract a joint of the first person in the first '
      'frame, or in every frame (default: keypoints as given).')
  flags.DEFINE_string(
      'centre_joint', None,
      '--centre: the joint, by name (default: the layout\'s centre).')
  flags.DEFINE_list(
      'align', None,
      'pose_annotations *_3d: 2s-AGCN\'s view alignment by four joint names '
      'a,b,c,d: the first person\'s a->b in the first frame turned to +z, then '
      'c->d to +x (ntu25, as 2s-AGCN: SpineBase,SpineMid,ShoulderLeft,'
      'ShoulderRight).')


def main(argv):
  names = argv[1:]
  if not names:
    raise app.UsageError(
        'Name the dataset(s) to build, e.g. ntu_rgbd/xview (configs: xview, '
        'xsub, xsub120, xset120, each also as <config>_tracked) or '
        'pose_annotations/coco17_2d (configs: <layout>_<kind>, layout ntu25, '
        'coco17, openpose18 or custom (a layout.json), kind 3d, 2d or 2d_xy) or '
        'nw_ucla.')
  cli.show_only_own_info_logs()
  if FLAGS.quiet:
    logging.set_verbosity(logging.ERROR)
  normalization = None
  if FLAGS.centre or FLAGS.centre_joint or FLAGS.align:
    normalization = annotations.Normalization(
        FLAGS.centre, FLAGS.centre_joint,
        None if FLAGS.align is None else tuple(FLAGS.align))
  for name in names:
    summary = build.build_dataset(
        name,
        manual_dir=FLAGS.manual_dir,
        data_dir=FLAGS.data_dir,
        num_workers=FLAGS.num_processes,
        overwrite=FLAGS.overwrite,
        quiet=FLAGS.quiet,
        max_persons=FLAGS.max_persons,
        normalization=normalization,
    )
    print(summary.format(), flush=True)


if __name__ == '__main__':
  _define_flags()
  # A dataset name that is not a config, or an annotation file that cannot be
  # used, is a ValueError (TFDS's or ours: AnnotationError is one).
  cli.run(main, input_errors=(ValueError,))
