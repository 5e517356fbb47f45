"""Test setup, before JAX is imported anywhere: four fake CPU devices, and one
compilation cache on disk for the session, shared with the runs the tests start as
subprocesses (most of them compile the same tiny network)."""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  _cache = tempfile.mkdtemp(prefix="stbln_jax_tests_jit_")
  atexit.register(shutil.rmtree, _cache, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Copies of the six real NTU RGB+D files and the official missing-skeleton lists.
NTU_SAMPLES = REPO_ROOT / "tests" / "data" / "ntu_samples"


@pytest.fixture(scope="session")
def ntu_samples_dir():
  return NTU_SAMPLES


# Modules whose fixtures train whole runs, longest first: started first, they leave the
# short tests to fill the other process (`pytest -n 2 --dist loadscope`) instead of
# running alone at the end.
_LONG_MODULES = ('test_keypoints_route.py', 'test_sweep.py', 'test_import_torch.py',
                 'test_multihost.py', 'test_kill.py', 'test_own_skeleton.py')


def pytest_collection_modifyitems(items):
  def rank(item):
    name = item.path.name
    return _LONG_MODULES.index(name) if name in _LONG_MODULES else len(_LONG_MODULES)
  items.sort(key=rank)
