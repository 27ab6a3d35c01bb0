"""fetch/prepare/info/preview work without torch; torch-only commands say how to install it.

Each test runs its commands in ONE fresh interpreter where ``import torch`` raises ImportError
(the test process itself has torch loaded, so this needs a real subprocess).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BLOCK_TORCH = """
import contextlib, io, json, sys
sys.modules["torch"] = None  # `import torch` now raises ImportError
from dlprep.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    results.append([code, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def run_without_torch(*commands: list[str]) -> list[subprocess.CompletedProcess[str]]:
    """Run each ``dlprep`` command line in turn in one interpreter that cannot import torch."""
    proc = subprocess.run([sys.executable, "-c", BLOCK_TORCH, json.dumps(commands)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr  # main() itself never raised
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    return [subprocess.CompletedProcess(argv, code, out, err)
            for argv, (code, out, err) in zip(commands, results, strict=True)]


def test_core_commands_need_no_torch(cache_dir: Path, tmp_path: Path) -> None:
    png = tmp_path / "p.png"
    fetched, text, info, preview = run_without_torch(
        ["--cache-dir", str(cache_dir), "fetch", "mnist-sample"],
        ["--cache-dir", str(cache_dir), "fetch", "gutenberg-sample"],
        ["--cache-dir", str(cache_dir), "info", "mnist-sample"],
        ["--cache-dir", str(cache_dir), "preview", "mnist-sample", "--out", str(png)])
    assert fetched.returncode == 0, fetched.stderr
    assert Path(fetched.stdout.strip().splitlines()[-1]).is_file()
    assert text.returncode == 0, text.stderr
    assert info.returncode == 0 and "images" in info.stdout
    assert preview.returncode == 0 and png.stat().st_size > 0


def test_train_baseline_without_torch_is_a_clear_error(cache_dir: Path) -> None:
    (proc,) = run_without_torch(["--cache-dir", str(cache_dir), "train-baseline", "mlp",
                                 "mnist-sample"])
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "torch" in proc.stderr
    assert "pip install" in proc.stderr and "Traceback" not in proc.stderr
