"""Host memory: keep freed memory in the process instead of returning it to the OS.

On the CPU backend, XLA allocates each step's temporaries (3.7 GB for a training step
of the paper's network at batch 8, T=300, M=2) as one fresh block and frees it at the
end of the step. glibc serves blocks that large with mmap and gives them back with
munmap, so every step page-faults gigabytes of zeroed pages back in: ≈1M page faults
and 6 s of kernel time per training step on a 2-core machine, a quarter of its
wall-clock time (BENCHMARKS.md). Keeping freed memory in the heap removes that cost;
the price is that the process holds on to its peak memory.

`retain_freed_memory()` sets this through glibc's mallopt. It must run before the
first JAX computation (before XLA's threads first allocate); the command-line
programs (`stbln_jax.main`, `.benchmark`, `.predict`) call it first thing. Set
STBLN_JAX_RETAIN_HOST_MEMORY=0 to leave the allocator alone.
"""

import ctypes
import os
import sys

_ENV = 'STBLN_JAX_RETAIN_HOST_MEMORY'

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_done = None


def retain_freed_memory() -> bool:
  """Makes glibc keep freed blocks for reuse; True if it took effect.

  One heap for all threads (M_ARENA_MAX=1: a thread's own heap would still hand large
  blocks to mmap), no mmap for large blocks (M_MMAP_MAX=0) and no trimming of the
  heap's top (M_TRIM_THRESHOLD=-1, i.e. SIZE_MAX). A no-op elsewhere than glibc Linux,
  when STBLN_JAX_RETAIN_HOST_MEMORY=0, and on a second call.
  """
  global _done
  if _done is not None:
    return _done
  _done = False
  if not sys.platform.startswith('linux') or os.environ.get(_ENV, '1') == '0':
    return False
  try:
    libc = ctypes.CDLL(None)
  except OSError:
    return False
  if not hasattr(libc, 'gnu_get_libc_version') or not hasattr(libc, 'mallopt'):
    return False  # not glibc (musl's mallopt does nothing)
  mallopt = libc.mallopt
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  _done = all(mallopt(param, value) == 1 for param, value in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
  return _done
