"""Test setup: four fake CPU devices, set before JAX is imported anywhere."""

import os
import pathlib

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
# Copies of the six real NTU RGB+D files and the official missing-skeleton lists.
NTU_SAMPLES = REPO_ROOT / "tests" / "data" / "ntu_samples"


@pytest.fixture(scope="session")
def ntu_samples_dir():
  return NTU_SAMPLES
