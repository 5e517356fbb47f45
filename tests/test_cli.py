"""Every command reports configuration and input errors as one line and status 2.

A bad flag value, a missing required flag, a config file that cannot be loaded, a
config field that does not exist, or a workdir or file that is not there: one line
on stderr, `error: ...`, and exit status 2. `--verbose` shows the traceback.
"""

import subprocess
import sys

import pytest

from tiny_run import REPO, subprocess_env


def run_command(module, *args):
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                        capture_output=True, text=True, timeout=120,
                        env=subprocess_env(num_devices=1))


def assert_one_line_error(result, *fragments):
  assert result.returncode == 2, result.stderr[-3000:]
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith('error: '), lines[0]
  for fragment in fragments:
    assert fragment in lines[0], lines[0]


MAIN_ERRORS = [
    (['--config=configs/missing.py', '--workdir={tmp}'],
     ['--config=configs/missing.py', 'No such file']),
    (['--config=configs/default.py:xview', '--workdir={tmp}'],
     ["unknown benchmark 'xview'"]),
    (['--config=configs/cv.py', '--workdir={tmp}', '--config.batch_sizee=8'],
     ["no field 'batch_sizee'", 'Did you mean "batch_size"']),
    (['--config=configs/cv.py', '--workdir={tmp}', '--config.batch_size=eight'],
     ['--config.batch_size=eight']),
    (['--config=configs/cv.py'], ['--workdir']),
    (['--config=configs/cv.py', '--workdir={tmp}', 'extra'], ["unexpected arguments"]),
    (['--config=configs/cv.py', '--workdir={tmp}', '--config.data_dir={tmp}/none'],
     ['is not built', 'data_prep.build']),
    (['--mode=eval', '--workdir={tmp}'], ['config.json not found']),
    (['--config=configs/cv.py', '--workdir={tmp}', '--multihost', '--num_processes=2',
      '--process_id=5', '--coordinator_address=127.0.0.1:1'], ['process_id=5']),
]


@pytest.mark.parametrize('args,fragments', MAIN_ERRORS, ids=[
    'missing_config_file', 'get_config_fails', 'unknown_field', 'bad_value',
    'missing_workdir', 'extra_argument', 'dataset_not_built', 'not_a_run_workdir',
    'bad_process_id'])
def test_main_reports_input_errors_as_one_line(args, fragments, tmp_path):
  args = [a.format(tmp=tmp_path) for a in args]
  assert_one_line_error(run_command('stbln_jax.main', *args), *fragments)


def test_verbose_shows_the_traceback(tmp_path):
  result = run_command('stbln_jax.main', '--mode=eval', f'--workdir={tmp_path}',
                       '--verbose')
  assert result.returncode != 0 and 'Traceback' in result.stderr


def test_predict_and_ensemble_report_input_errors_as_one_line(tmp_path):
  assert_one_line_error(run_command('stbln_jax.predict', f'--workdir={tmp_path}',
                                    'S001C001P001R001A001.skeleton'), 'config.json')
  assert_one_line_error(run_command('stbln_jax.predict', '--top_k=many'), '--top_k')
  assert_one_line_error(run_command('stbln_jax.ensemble', f'--workdirs={tmp_path}',
                                    '--weights=1,2'), 'weight')


OTHER_COMMANDS = [
    ('stbln_jax.flops', ['--config=configs/cv.py', '--config.model.mixer=foo'],
     ["model.mixer='foo' is not a mixer"]),
    ('stbln_jax.flops', ['--config=configs/missing.py'], ['--config=configs/missing.py']),
    ('benchmarks.model', ['--repeats=x'], ['--repeats=x']),
    ('benchmarks.model', ['--mixer=foo', '--frames=16', '--batch=4', '--num_layers=2',
                             '--modes=infer'], ["model.mixer='foo' is not a mixer"]),
    ('data_prep.build', ['ntu_rgbd/xview', '--manual_dir={tmp}/none'], ['is not a directory']),
    ('data_prep.build', [], ['ntu_rgbd/xview', 'pose_annotations/coco17_2d']),
    ('data_prep.build', ['pose_annotations/coco17_2d', '--manual_dir={tmp}',
                         '--data_dir={tmp}/tfds'],
     ['manual_dir', 'is empty']),
    ('data_prep.build', ['foo/bar', '--manual_dir={tmp}'],
     ["'foo/bar' is not an ntu_rgbd, pose_annotations or nw_ucla config"]),
    ('stbln_jax.sweep', ['--sweep=foo'], ['--sweep=foo']),
    ('stbln_jax.analyze', ['--workdir={tmp}'], ['config.json not found']),
    ('benchmarks.data', [], ['build|pipeline']),
    ('stbln_jax.import_torch', ['--checkpoint={tmp}/missing.pt', '--config=configs/cv.py',
                                '--workdir={tmp}/imported'], ['missing.pt']),
    ('stbln_jax.export', ['--workdir={tmp}', '--output={tmp}/model.stablehlo'],
     ['config.json']),
    ('stbln_jax.stream', ['--export={tmp}/missing.stablehlo', 'S001C001P001R001A011.skeleton'],
     ['missing.stablehlo']),
]


@pytest.mark.parametrize('module,args,fragments', OTHER_COMMANDS,
                         ids=[f'{m}-{i}' for i, (m, _, _) in enumerate(OTHER_COMMANDS)])
def test_other_commands_report_input_errors_as_one_line(module, args, fragments, tmp_path):
  result = run_command(module, *[a.format(tmp=tmp_path) for a in args])
  assert_one_line_error(result, *fragments)
