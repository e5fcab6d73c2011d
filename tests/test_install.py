"""A non-editable ``pip install .`` into a fresh virtual environment works from an empty folder:
``python -m csdseg``, the ``csdseg`` script, and the presets, shipped as package data and found
by name. Nothing is downloaded: the new environment sees this one's packages (torch, timm, ...,
and the build backend) through a ``.pth`` file, and csdseg itself is installed without them.

(``venv --system-site-packages`` would not do: it exposes the base interpreter's packages, not
those of the virtual environment the tests run in, where torch usually is.)
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_non_editable_install_runs_from_an_empty_folder(tmp_path):
    start = time.time()
    src = tmp_path / "src"  # a copy, so that the build leaves no build/ or egg-info in the repo
    shutil.copytree(REPO / "csdseg", src / "csdseg",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    # this environment's packages, as plain path entries: a .pth line is not itself processed,
    # so an editable csdseg here (its finder hook) does not come along
    (purelib / "_parent_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               OMP_NUM_THREADS="1")
    # --ignore-installed: never touch (uninstall) the csdseg of this environment
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
          "--no-index", "--ignore-installed", str(src)], cwd=empty, env=env, timeout=300)

    where = _run([str(python), "-c", "import csdseg; print(csdseg.__file__)"], empty, env)
    assert Path(where.strip()).is_relative_to(purelib), where  # the installed copy, not the repo
    assert "STAGE" in _run([str(python), "-m", "csdseg", "--help"], empty, env)
    assert "--baselines" in _run([str(env_dir / "bin" / "csdseg"), "demo", "--help"], empty, env)
    check = ("from csdseg.config import PRESETS_DIR, load_config, preset_names\n"
             "from csdseg.stages import demo\n"
             "assert {'voc_irn', 'synthetic_irn', 'synthetic_mct'} <= set(preset_names())\n"
             "print([load_config(name).name for name in demo.PRESETS.values()], PRESETS_DIR)\n"
             "print(load_config('configs/voc_irn.yaml').name)\n")
    out = _run([str(python), "-c", check], empty, env)
    assert "['synthetic_irn', 'synthetic_mct']" in out and str(purelib) in out, out
    assert out.strip().endswith("voc_irn")
    assert not list(empty.iterdir())  # nothing written where it ran
    assert time.time() - start < 180
