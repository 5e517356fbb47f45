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
