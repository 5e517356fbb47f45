"""How the commands talk to the console: input errors as one line, quiet libraries.

A configuration or input error ends the command with ONE line on stderr,
`error: ...`, and exit status 2; `--verbose` shows its traceback too. Input errors
are: a flag that does not parse (a bad value, a missing required flag, a config
file that cannot be loaded, a `--config.field` the config lacks), and, raised by
the command, `InputError`, `FileNotFoundError`, `app.UsageError` or the classes the
command names. Any other exception is a bug and keeps its traceback.

  def main(argv): ...
  if __name__ == '__main__':
    cli.run(main, input_errors=(models.ConfigError,))
"""

import ast
import contextlib
import logging as std_logging
import os
import sys
from typing import Callable, NoReturn, Sequence

from absl import app
from absl import flags
from absl import logging

_VERBOSE = flags.DEFINE_bool('verbose', False,
                             'Show the traceback of a configuration or input error.')

USAGE_ERROR_STATUS = 2


class InputError(ValueError):
  """Input a command cannot use (a flag value, a file), with what to change."""


def one_line(error: BaseException) -> str:
  """`error: <message>` with the message's lines joined."""
  message = ' '.join(line.strip() for line in str(error).splitlines() if line.strip())
  return f'error: {message or type(error).__name__}'


def _fail(line: str) -> NoReturn:
  print(line, file=sys.stderr, flush=True)
  sys.exit(USAGE_ERROR_STATUS)


def _unquoted(text: str) -> str:
  """`text` without the repr quoting KeyError and AttributeError put around it."""
  while len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
    try:
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      break
  return text


def _flag_error_line(error: BaseException) -> str:
  """One line for an error raised while parsing the flags."""
  lines = [line.strip() for line in _unquoted(str(error)).splitlines() if line.strip()]
  if any(line.startswith('Traceback (most recent call last)') for line in lines):
    # A config file's get_config() failed: where, and the exception itself.
    lines = [lines[0], lines[-1]]
  message = ' '.join(lines)
  if isinstance(error, (AttributeError, KeyError)):
    message = f'the config has no field {message}'
  return f'error: {message or type(error).__name__}'


def _config_file_errors() -> None:
  """Raises the load error of a `--config` file (config_flags defers it to first use)."""
  for name in flags.FLAGS:
    flag = flags.FLAGS[name]
    if flag.present:
      try:
        getattr(flag.value, 'keys', None)  # any use raises the deferred error
      except OSError as e:
        reason = str(e.__cause__ or e).strip().splitlines()[-1].strip()
        raise InputError(f'--{name}={flag.serialize().split("=", 1)[-1]}: '
                         f'cannot load the config file: {reason}') from e


def _verbose_in(argv: Sequence[str]) -> bool:
  return any(a in ('--verbose', '--verbose=true', '--verbose=1') for a in argv[1:])


def _parse_flags(argv: Sequence[str]) -> list[str]:
  try:
    rest = flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-exception-caught
    # Everything raised while parsing comes from the command line or the config
    # file it names.
    if _verbose_in(argv):
      raise
    _fail(_flag_error_line(e))
  try:
    _config_file_errors()
  except InputError as e:
    if _verbose_in(argv):
      raise
    _fail(one_line(e))
  return rest


def run(main: Callable[[Sequence[str]], int | None], *,
        input_errors: tuple[type[BaseException], ...] = ()) -> None:
  """`app.run(main)`, with flag and input errors reported as one line and status 2."""
  caught = (InputError, FileNotFoundError, app.UsageError) + tuple(input_errors)

  def guarded(argv):
    try:
      return main(argv)
    except caught as e:
      if _VERBOSE.value:
        raise
      _fail(one_line(e))
  app.run(guarded, flags_parser=_parse_flags)


@contextlib.contextmanager
def quiet_logs():
  """Only errors are logged inside (a check whose failure is reported as one line)."""
  previous = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    yield
  finally:
    logging.set_verbosity(previous)


def show_only_own_info_logs() -> None:
  """Console logs: warnings from every library, INFO only from this package.

  Orbax and TFDS log every checkpoint step and dataset access at INFO, which would
  bury the training progress.
  """
  own = f'{os.sep}stbln_jax{os.sep}'
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or own in record.pathname)
