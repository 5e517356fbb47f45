"""How the commands talk to the console: input errors as one line, quiet libraries.

A configuration or input error (`InputError`, `FileNotFoundError`, or the classes a
command names) ends the command with ONE line on stderr, `error: ...`, and exit
status 2; `--verbose` shows its traceback too. Any other exception is a bug and
keeps its traceback.

  def main(argv): ...
  if __name__ == '__main__':
    cli.run(main, input_errors=(models.ConfigError,))
"""

import logging as std_logging
import os
import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

_VERBOSE = flags.DEFINE_bool('verbose', False,
                             'Show the traceback of a configuration or input error.')


class InputError(ValueError):
  """Input a command cannot use (a flag value, a file), with what to change."""


def one_line(error: BaseException) -> str:
  """`error: <message>` with the message's lines joined."""
  message = ' '.join(line.strip() for line in str(error).splitlines() if line.strip())
  return f'error: {message or type(error).__name__}'


def run(main: Callable[[Sequence[str]], int | None], *,
        input_errors: tuple[type[BaseException], ...] = ()) -> None:
  """`app.run(main)`, with input errors reported as one line and status 2."""
  caught = (InputError, FileNotFoundError) + tuple(input_errors)

  def guarded(argv):
    try:
      return main(argv)
    except caught as e:
      if _VERBOSE.value:
        raise
      print(one_line(e), file=sys.stderr, flush=True)
      sys.exit(2)
  app.run(guarded)


def show_only_own_info_logs() -> None:
  """Console logs: warnings from every library, INFO only from this package.

  Orbax and TFDS log every checkpoint step and dataset access at INFO, which would
  bury the training progress.
  """
  own = f'{os.sep}stbln_jax{os.sep}'
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno >= std_logging.WARNING or own in record.pathname)
