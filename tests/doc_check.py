"""What a markdown page names, and whether it exists.

`read_references` reads a page for:
- `python -m <module> ...` in code blocks and code spans (lines continued with `\\`,
  after `&&`, behind `VAR=value`): the module must be one of this repository, every
  `--flag`, `--flag=value` and `--noflag` a flag of that command, every `--config.<field>`
  a field of the config the command loads (`--config=FILE[:arg]`, whose `get_config`
  must run; a config file outside the repository is the user's and is not read);
- a flag alone in a code span (`--max_persons=N`): a flag of some documented command
  (`--config.<field>`: a field of configs/default.py, which has every field; flags of
  XLA, `--xla_*`, are not checked);
- repository paths in code (`stbln_jax/...`, `configs/*.py`, `launch/...`, `tests/...`,
  `docs/...`; user paths such as `/data/...` or `runs/...` are not checked) and local
  link targets: they must exist;
- dotted names (`stbln_jax.data.build.build_dataset`, `from stbln_jax import serving`):
  they must import; pip extras (`.[test]`): defined in pyproject.toml.
`check` lists what does not hold, one line each. What the commands define is learnt by
`introspect`, run in a fresh process (this file as a script: flags are process-global):
it imports every command, defines its flags (`_define_flags`) one command at a time (a
script that defines them on import owns those) and loads every config.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
# The top-level folders whose paths the docs name; others (`runs/`, `/data/`) are the user's.
ROOTS = ('stbln_jax', 'data_prep', 'benchmarks', 'configs', 'launch', 'tests', 'docs')
PACKAGES = ('stbln_jax', 'data_prep', 'benchmarks')
SHELL = ('', 'bash', 'sh', 'shell', 'console')
# Understood by every absl command.
ABSL_FLAGS = ('help', 'helpfull', 'helpshort', 'helpxml', 'flagfile', 'undefok')

_PATH = re.compile(rf'(?<![\w./~$<>-])((?:{"|".join(ROOTS)})/[\w./*-]*)')
_DOTTED = re.compile(rf'(?<![\w./-])((?:{"|".join(PACKAGES)})(?:\.[A-Za-z_]\w*)+)')
_FROM_IMPORT = re.compile(rf'^\s*from\s+((?:{"|".join(PACKAGES)})[\w.]*)\s+import\s+'
                          r'\(?([\w, ]+)', re.M)
_SPAN = re.compile(r'(`+)(.+?)\1', re.S)
_LINK = re.compile(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
_EXTRAS = re.compile(r'^[\w./-]*\[([\w,-]+)\]$')
_COMMAND = re.compile(r'\bpython[\d.]*\s+-m\b|\bpip\s+install\b')


@dataclasses.dataclass
class Command:
  where: str           # 'README.md:12'
  module: str
  args: list[str]


@dataclasses.dataclass
class References:
  """What one markdown page names."""
  commands: list[Command] = dataclasses.field(default_factory=list)
  flags: list[tuple[str, str]] = dataclasses.field(default_factory=list)      # lone spans
  paths: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  links: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  names: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  extras: list[tuple[str, str]] = dataclasses.field(default_factory=list)

  def configs(self) -> set[str]:
    """The `--config=` of the commands that name a config file of this repository."""
    specs = {config_spec(args) for args in [c.args for c in self.commands] +
             [[flag] for _, flag in self.flags]} - {None}
    return {s for s in specs if (REPO / s.partition(':')[0]).is_file()}

  def modules(self) -> set[str]:
    return {c.module for c in self.commands if c.module.split('.')[0] in PACKAGES}


# ---- Reading markdown --------------------------------------------------------------

def split_markdown(text: str):
  """(fenced blocks as (language, first line number, body), the prose with blocks blanked)."""
  blocks, prose, fence = [], [], None
  for number, line in enumerate(text.splitlines(), 1):
    stripped = line.strip()
    if fence is None and stripped.startswith(('```', '~~~')):
      fence, body = stripped[:3], []
      blocks.append((stripped[3:].strip().lower().split(' ')[0], number + 1, body))
      prose.append('')
    elif fence is not None:
      if stripped.startswith(fence) and not stripped.strip(fence[0]):
        fence = None
      else:
        body.append(line)
      prose.append('')
    else:
      prose.append(line)
  return blocks, '\n'.join(prose)


def shell_lines(body: list[str], first: int):
  """(line number, logical line) of a shell block, `\\`-continued lines joined."""
  pending, start = '', first
  for number, line in enumerate(body, first):
    if not pending:
      start = number
    if line.rstrip().endswith('\\'):
      pending += line.rstrip()[:-1] + ' '
    else:
      yield start, pending + line
      pending = ''
  if pending:
    yield start, pending


def split_commands(line: str) -> list[list[str]]:
  """The simple commands of a shell line (split at `&&`, `||`, `;`, `|`); comments dropped."""
  lexer = shlex.shlex(line, posix=True, punctuation_chars=';&|')
  lexer.whitespace_split = True
  lexer.commenters = '#'
  commands, current = [], []
  for token in lexer:
    if token and not token.strip(';&|'):
      commands.append(current)
      current = []
    else:
      current.append(token)
  return [c for c in commands + [current] if c]


def python_module(tokens: list[str]) -> tuple[str, list[str]] | None:
  """(module, arguments) of `[VAR=value ...] python -m module args`, else None."""
  for i, token in enumerate(tokens[:-2]):
    if re.fullmatch(r'python[\d.]*', os.path.basename(token)) and tokens[i + 1] == '-m':
      return tokens[i + 2], tokens[i + 3:]
  return None


def read_references(name: str, text: str) -> References:
  """Everything `text` (the page `name`) names that the checks look at."""
  refs = References()
  blocks, prose = split_markdown(text)

  def code(where, snippet, shell):
    refs.paths += [(where, p) for p in _PATH.findall(snippet)]
    refs.names += [(where, n) for n in _DOTTED.findall(snippet)]
    refs.names += [(where, f'{m}.{n.strip()}') for m, names in _FROM_IMPORT.findall(snippet)
                   for n in names.split(',') if n.strip()]
    if not shell:
      return
    try:
      commands = split_commands(snippet)
    except ValueError as e:  # unbalanced quotes
      refs.commands.append(Command(where, '', [f'cannot be split into commands: {e}']))
      return
    for tokens in commands:
      found = python_module(tokens)
      if found:
        refs.commands.append(Command(where, found[0], found[1]))
      if 'pip' in tokens and 'install' in tokens:
        refs.extras += [(where, t) for t in tokens if _EXTRAS.match(t)]

  for language, first, body in blocks:
    shell = language in SHELL
    for number, line in (shell_lines(body, first) if shell else enumerate(body, first)):
      code(f'{name}:{number}', line, shell and bool(_COMMAND.search(line)))
  for match in _SPAN.finditer(prose):
    where = f'{name}:{prose.count(chr(10), 0, match.start()) + 1}'
    span = ' '.join(match.group(2).split())
    if re.fullmatch(r'--[\w.<>]+(=\S*)?', span):
      refs.flags.append((where, span))
    code(where, span, bool(_COMMAND.search(span)))
  for match in _LINK.finditer(_SPAN.sub('', prose)):
    target = match.group(1)
    if not re.match(r'[a-z][\w+.-]*:|#', target):
      refs.links.append((f'{name}:{prose.count(chr(10), 0, match.start()) + 1}', target))
  return refs


def config_spec(args: list[str]) -> str | None:
  """The `FILE[:arg]` of a command's `--config=`."""
  for i, arg in enumerate(args):
    if arg.startswith('--config='):
      return arg[len('--config='):]
    if arg == '--config' and i + 1 < len(args):
      return args[i + 1]
  return None


# ---- Checking ----------------------------------------------------------------------

def check_command(command: Command, info: dict) -> list[str]:
  where, module = f'{command.where}: python -m {command.module}', command.module
  if module.split('.')[0] not in PACKAGES:
    return [] if module else [f'{command.where}: {command.args[0]}']
  known = info['modules'].get(module, {})
  if 'flags' not in known:
    return [f'{where}: {known.get("error", "not examined")}']
  flags = {**info['base'], **known['flags']}
  spec = config_spec(command.args)
  problems = []
  if 'error' in info['configs'].get(spec, {}):
    problems.append(f'{where}: --config={spec}: {info["configs"][spec]["error"]}')
  for arg in command.args:
    arg = arg.strip('[],')
    if not arg.startswith('--') or arg == '--':
      continue
    name = arg[2:].split('=', 1)[0]
    prefix, dot, field = name.partition('.')
    if name in flags or name in ABSL_FLAGS:
      continue
    if name.startswith('no') and flags.get(name[2:], {}).get('bool') and '=' not in arg:
      continue
    if dot and flags.get(prefix, {}).get('config'):
      problems += check_field(where, arg.split('=', 1)[0], field, spec, info)
      continue
    problems.append(f'{where}: {arg.split("=", 1)[0]} is not a flag of {module}')
  return problems


def check_field(where: str, flag: str, field: str, spec: str | None, info: dict) -> list[str]:
  if not re.fullmatch(r'\w+(\.\w+)*', field):  # `--config.<field>=<value>`
    return []
  if spec is None:
    return [f'{where}: {flag} without a --config=FILE to look it up in']
  # A config outside the repository (the user's) is not read; an error is reported once.
  loaded = info['configs'].get(spec, {'error': None})
  if 'error' not in loaded and field not in loaded['fields']:
    return [f'{where}: {flag}: {spec} has no field {field!r}']
  return []


def check_path(where: str, path: str) -> list[str]:
  path = path.rstrip('.')
  if '*' in path:
    return [] if glob.glob(str(REPO / path)) else [f'{where}: nothing matches {path}']
  return [] if (REPO / path).exists() else [f'{where}: {path} does not exist']


def check(name: str, refs: References, info: dict, *, record: bool = False) -> list[str]:
  """Every problem of the references of page `name` (README.md, docs/x.md), one line each.

  With `record` (BENCHMARKS.md) only links and the flags of commands that still exist.
  """
  problems = []
  page_dir = (REPO / name).parent
  for where, target in refs.links:
    target = target.split('#')[0]
    if target and not (page_dir / target).exists():
      problems.append(f'{where}: the link target {target} does not exist')
  for command in refs.commands:
    if not record or 'flags' in info['modules'].get(command.module, {}):
      problems += check_command(command, info)
  if record:
    return problems
  for where, path in refs.paths:
    problems += check_path(where, path)
  every_flag = {**info['base'], **{f: v for m in info['modules'].values()
                                   for f, v in m.get('flags', {}).items()}}
  for where, flag in refs.flags:
    flag_name = flag[2:].split('=')[0]
    base = flag_name.split('.')[0]
    if flag_name.startswith('xla_'):  # XLA's own, set through XLA_FLAGS
      continue
    negated = flag_name.startswith('no') and every_flag.get(flag_name[2:], {}).get('bool')
    loaded = info['configs'].get(config_spec([flag]), {})
    if base not in every_flag and not negated:
      problems.append(f'{where}: {flag} is a flag of no documented command')
    elif 'error' in loaded:
      problems.append(f'{where}: {flag}: {loaded["error"]}')
    elif every_flag.get(base, {}).get('config') and '.' in flag_name:
      problems += check_field(where, flag.split('=')[0], flag_name.partition('.')[2],
                              'configs/default.py', info)
  commands = {c.module for c in refs.commands}  # checked as commands
  for where, dotted in refs.names:
    if dotted not in commands and not info['names'].get(dotted):
      problems.append(f'{where}: {dotted} cannot be imported')
  extras = pip_extras()
  for where, token in refs.extras:
    problems += [f'{where}: pip extra [{e}] is not in pyproject.toml'
                 for e in _EXTRAS.match(token).group(1).split(',') if e not in extras]
  return problems


def pip_extras() -> set[str]:
  """The extras of pyproject.toml's [project.optional-dependencies] (no tomllib in 3.10)."""
  text = (REPO / 'pyproject.toml').read_text()
  section = text.split('[project.optional-dependencies]', 1)[-1].split('\n[', 1)[0]
  return set(re.findall(r'^([\w-]+)\s*=', section, re.M))


# ---- What the commands define (the subprocess) --------------------------------------

def introspect(request: dict) -> dict:
  """The flags of each command module, the fields of each config, which names import."""
  import importlib  # pylint: disable=import-outside-toplevel
  import importlib.util  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel
  import ml_collections  # pylint: disable=import-outside-toplevel
  from ml_collections.config_flags import config_flags  # pylint: disable=import-outside-toplevel

  FLAGS = flags.FLAGS  # pylint: disable=invalid-name

  def describe(names):
    return {n: {'bool': bool(FLAGS[n].boolean), 'config': config_flags.is_config_flag(FLAGS[n])}
            for n in names}

  def find(name):
    try:
      return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
      return False

  modules, loaded = {}, {}
  for name in sorted(request['modules']):
    if not find(name):
      modules[name] = {'error': 'no such module'}
      continue
    try:
      loaded[name] = importlib.import_module(name)
    except Exception as e:  # pylint: disable=broad-except
      modules[name] = {'error': f'cannot be imported: {type(e).__name__}: {e}'}
  # A command that defines its flags on import (a script) owns them; they are set aside
  # so that another command may define the same names.
  by_module = FLAGS.flags_by_module_dict()
  on_import = {name: describe({f.name for f in by_module.get(name, [])}) for name in loaded}
  for flag in {f for own in on_import.values() for f in own}:
    delattr(FLAGS, flag)
  base = describe(FLAGS)  # absl's, the libraries' and stbln_jax.cli's
  for name, module in loaded.items():
    before = set(FLAGS)
    if hasattr(module, '_define_flags'):  # the commands define their flags only when run
      module._define_flags()  # pylint: disable=protected-access
    own = set(FLAGS) - before
    modules[name] = {'flags': {**on_import[name], **describe(own)}}
    for flag in own:
      delattr(FLAGS, flag)

  def fields(config, prefix=''):
    for key, value in config.items():
      yield prefix + key
      if isinstance(value, ml_collections.ConfigDict):
        yield from fields(value, f'{prefix}{key}.')

  configs = {}
  for i, spec in enumerate(sorted(request['configs'])):
    path, _, arg = spec.partition(':')
    try:
      module_spec = importlib.util.spec_from_file_location(f'_doc_config_{i}', path)
      module = importlib.util.module_from_spec(module_spec)
      module_spec.loader.exec_module(module)
      config = module.get_config(arg) if arg else module.get_config()
      configs[spec] = {'fields': sorted(fields(config))}
    except Exception as e:  # pylint: disable=broad-except
      configs[spec] = {'error': f'{type(e).__name__}: {e}'}

  def imports(dotted):
    parts = dotted.split('.')
    for i in range(len(parts), 0, -1):
      module_name = '.'.join(parts[:i])
      if not find(module_name):
        continue
      try:
        value = importlib.import_module(module_name)
        for part in parts[i:]:
          value = getattr(value, part)
        return True
      except Exception:  # pylint: disable=broad-except
        return False
    return False

  names = {dotted: imports(dotted) for dotted in request['names']}
  return {'modules': modules, 'base': base, 'configs': configs, 'names': names}


def run_introspection(refs: list[References]) -> dict:
  """`introspect` in one fresh process (flags are process-global) for all of `refs`."""
  request = {'modules': sorted(set().union(*(r.modules() for r in refs))),
             'configs': sorted(set().union(*(r.configs() for r in refs)) |
                               {'configs/default.py'}),
             'names': sorted({n for r in refs for _, n in r.names})}
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  with tempfile.TemporaryDirectory() as tmp:
    out_file = pathlib.Path(tmp) / 'introspection.json'
    result = subprocess.run([sys.executable, __file__, str(out_file)], cwd=REPO, env=env,
                            input=json.dumps(request), capture_output=True, text=True,
                            timeout=300)
    if result.returncode:
      raise RuntimeError(f'{__file__} failed:\n{result.stderr[-3000:]}')
    return json.loads(out_file.read_text())


if __name__ == '__main__':
  sys.path.insert(0, str(REPO))
  pathlib.Path(sys.argv[1]).write_text(json.dumps(introspect(json.load(sys.stdin))))
