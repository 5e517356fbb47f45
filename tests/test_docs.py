"""The docs name only commands, flags, config fields, paths and names that exist.

README.md and every page under docs/ are checked in full (tests/doc_check.py).
BENCHMARKS.md is a dated record that keeps the commands and files of earlier versions as
they were run, so only its links and the flags of its commands whose module still
exists are checked. One subprocess learns the flags and configs of every page's commands.
"""

import pytest

from doc_check import REPO, check, config_spec, read_references, run_introspection


def pages(root=REPO) -> list[str]:
  """README.md and every page under docs/."""
  return ['README.md'] + sorted(str(p.relative_to(root)) for p in (root / 'docs').rglob('*.md'))


def read_page(name):
  return read_references(name, (REPO / name).read_text())


# A page that names only what exists, in the ways the docs write commands.
GOOD = r'''
Install and run:

```bash
pip install -e '.[test]' && python -m stbln_jax.main --config=configs/demo.py \
    --workdir=/tmp/demo --config.model.mixer=additive   # a comment, it's fine
XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m stbln_jax.main --multihost \
    --config=configs/annotations.py:smoke --workdir=runs/mine --config.data_dir=<folder> \
    && python -m stbln_jax.main --config=my_config.py --config.my_field=1 --workdir=DIR
python -m data_prep.build ntu_rgbd/xview --manual_dir=DIR --data_dir=/data/tfds --nooverwrite
python -m stbln_jax.flops --config=configs/default.py:cs120,bone_motion --json \
    '--config.lr_decay_epochs=(6,7)' [--config.model.arch=lean]
launch/cpu.sh configs/demo.py /tmp/stbln_demo ... && pytest -q tests/test_docs.py
```

```
<workdir>/eval_test.json, runs/cv/checkpoints/4
```

```python
from stbln_jax import serving, stream
model = serving.load('/tmp/cv.stablehlo')
```

See `stbln_jax/ops/`, `configs/*.py`, `--config.<field>=<value>`, `--max_persons=N`,
`stbln_jax.data.build.build_dataset(...)`, `python -m
stbln_jax.flops --config=configs/cv.py --sweep_aggregate_at`, [the records](BENCHMARKS.md),
[a section](#install) and [a site](https://example.org/x.md).
'''

BAD = {
    'module': ('`python -m stbln_jax.no_such_command --workdir=x`',
               'python -m stbln_jax.no_such_command: no such module'),
    'flag': ('```bash\npython -m stbln_jax.flops --config=configs/cv.py \\\n'
             '    --no_such_flag=3\n```', 'README.md:2: python -m stbln_jax.flops: '
             '--no_such_flag is not a flag of stbln_jax.flops'),
    'noflag_of_a_string': ('`python -m stbln_jax.main --noworkdir`',
                           '--noworkdir is not a flag of stbln_jax.main'),
    'field': ('`python -m stbln_jax.flops --config=configs/cv.py --config.model.no_such=1`',
              "--config.model.no_such: configs/cv.py has no field 'model.no_such'"),
    'field_without_config': ('`python -m stbln_jax.flops --config.model.mixer=additive`',
                             '--config.model.mixer without a --config=FILE'),
    'config_arg': ('`python -m stbln_jax.flops --config=configs/default.py:xview`',
                   "--config=configs/default.py:xview: ValueError: configs/default.py:xview: "
                   "unknown benchmark 'xview'"),
    'path_in_block': ('```bash\nlaunch/no_such.sh configs/cv.py /tmp/x\n```',
                      'README.md:2: launch/no_such.sh does not exist'),
    'path_in_span': ('Read `stbln_jax/data/no_such.py`.',
                     'stbln_jax/data/no_such.py does not exist'),
    'glob': ('`configs/*.yaml`', 'nothing matches configs/*.yaml'),
    'link': ('[the page](docs/no_such.md#top)', 'the link target docs/no_such.md does not exist'),
    'name': ('`stbln_jax.train.no_such_function(config)`',
             'stbln_jax.train.no_such_function cannot be imported'),
    'from_import': ('```python\nfrom stbln_jax import no_such_module\n```',
                    'stbln_jax.no_such_module cannot be imported'),
    'lone_flag': ('Pass `--no_such_option=3`.', '--no_such_option=3 is a flag of no documented'),
    'lone_field': ('Set `--config.no_such_field`.',
                   "configs/default.py has no field 'no_such_field'"),
    'lone_config': ('Or `--config=configs/annotations.py:quick`.',
                    "configs/annotations.py:quick: the argument is 'smoke' or nothing"),
    'extra': ("`pip install -e '.[no_such_extra]'`",
              'pip extra [no_such_extra] is not in pyproject.toml'),
}


# A dated record: a command of an earlier version stays, a wrong flag of today's does not.
RECORD = """```bash
python -m stbln_jax.benchmark --batch=8 --frames=300   # the former benchmark, stbln_jax/hostmem.py
python -m benchmarks.model --batch=8 --frame=300
```"""


# A script that defines its flags on import, some of them named as data_prep.build's.
SCRIPT = '`python -m benchmarks.nw_ucla_inputs --manual_dir=DIR --data_dir=DIR`'


@pytest.fixture(scope='module')
def info():
  refs = [read_page(p) for p in pages()]
  record = read_page('BENCHMARKS.md')
  record.names = []  # not checked there
  refs.append(record)
  refs += [read_references('README.md', page)
           for page in [GOOD, RECORD, SCRIPT, *(b for b, _ in BAD.values())]]
  return run_introspection(refs)


def test_reading_markdown():
  refs = read_references('README.md', GOOD)
  assert [(c.where, c.module) for c in refs.commands] == [
      ('README.md:5', 'stbln_jax.main'), ('README.md:7', 'stbln_jax.main'),
      ('README.md:7', 'stbln_jax.main'), ('README.md:10', 'data_prep.build'),
      ('README.md:11', 'stbln_jax.flops'), ('README.md:26', 'stbln_jax.flops')]
  assert refs.commands[0].args[-1] == '--config.model.mixer=additive'  # comment dropped
  assert refs.commands[4].args[-2:] == ['--config.lr_decay_epochs=(6,7)',
                                       '[--config.model.arch=lean]']
  assert {p for _, p in refs.paths} == {
      'configs/demo.py', 'configs/annotations.py', 'configs/default.py', 'configs/cv.py',
      'launch/cpu.sh', 'tests/test_docs.py', 'stbln_jax/ops/', 'configs/*.py'}
  assert [t for _, t in refs.links] == ['BENCHMARKS.md']
  assert [f for _, f in refs.flags] == ['--config.<field>=<value>', '--max_persons=N']
  assert {n for _, n in refs.names} == {
      'stbln_jax.serving', 'stbln_jax.stream', 'stbln_jax.data.build.build_dataset',
      'stbln_jax.main', 'data_prep.build', 'stbln_jax.flops'}
  assert [t for _, t in refs.extras] == ['.[test]']
  assert config_spec(refs.commands[1].args) == 'configs/annotations.py:smoke'
  assert refs.configs() == {'configs/demo.py', 'configs/annotations.py:smoke',  # not the user's
                            'configs/default.py:cs120,bone_motion', 'configs/cv.py'}


def test_a_page_naming_what_exists_passes(info):
  assert check('README.md', read_references('README.md', GOOD), info) == []


@pytest.mark.parametrize('page,problem', BAD.values(), ids=BAD.keys())
def test_each_mismatch_is_reported(page, problem, info):
  problems = check('README.md', read_references('README.md', page), info)
  assert len(problems) == 1 and problem in problems[0], problems


def test_a_record_is_checked_for_todays_commands_only(info):
  assert check('BENCHMARKS.md', read_references('BENCHMARKS.md', RECORD), info, record=True) == [
      'BENCHMARKS.md:3: python -m benchmarks.model: --frame is not a flag of benchmarks.model']


def test_every_page_under_docs_is_read(tmp_path):
  (tmp_path / 'docs' / 'guide').mkdir(parents=True)
  for name in ('docs/data.md', 'docs/guide/start.md', 'docs/notes.txt'):
    (tmp_path / name).write_text('')
  assert pages(tmp_path) == ['README.md', 'docs/data.md', 'docs/guide/start.md']


def test_the_introspection_sees_each_commands_own_flags(info):
  main, flops = info['modules']['stbln_jax.main'], info['modules']['stbln_jax.flops']
  assert {'workdir', 'mode', 'multihost', 'config'} <= set(main['flags'])
  assert main['flags']['config']['config'] and main['flags']['multihost']['bool']
  assert 'workdir' not in flops['flags'] and 'sweep_aggregate_at' in flops['flags']
  assert 'verbose' in info['base']  # stbln_jax.cli's, shared by every command
  script, build = (info['modules'][m]['flags']
                   for m in ('benchmarks.nw_ucla_inputs', 'data_prep.build'))
  assert {'manual_dir', 'data_dir'} <= set(script) & set(build)
  assert 'manual_dir' not in info['base']


@pytest.mark.parametrize('page', pages())
def test_the_docs_name_only_what_exists(page, info):
  problems = check(page, read_page(page), info)
  assert not problems, '\n'.join(problems)


def test_benchmarks_md_links_and_commands(info):
  problems = check('BENCHMARKS.md', read_page('BENCHMARKS.md'), info, record=True)
  assert not problems, '\n'.join(problems)
