"""headlab pins the CPU's kernel instruction set on x86-64, so smoke numbers agree across machines."""

import os
import platform
import subprocess
import sys

import pytest

from headlab import paths


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the pin applies to x86-64 only")
def test_import_pins_avx2_unless_asked_not_to():
    code = "import os, headlab; print(os.environ.get('MKL_CBWR'), os.environ.get('ATEN_CPU_CAPABILITY'))"
    env = {k: v for k, v in os.environ.items() if k not in ("MKL_CBWR", "ATEN_CPU_CAPABILITY", "HEADLAB_NATIVE_ISA")}
    env["PYTHONPATH"] = str(paths.REPO_ROOT / "lib")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["AVX2", "avx2"]
    env["HEADLAB_NATIVE_ISA"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "None"]
    env.pop("HEADLAB_NATIVE_ISA")
    env["MKL_CBWR"] = "COMPATIBLE"  # an explicit setting wins
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "COMPATIBLE"
