"""fetch/prepare/info/preview work without torch; torch-only commands say how to install it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BLOCK_TORCH = ("import sys; sys.modules['torch'] = None; "  # `import torch` now raises ImportError
               "from dlprep.cli import main; sys.exit(main(sys.argv[1:]))")


def run_without_torch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_TORCH, *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)


def test_core_commands_need_no_torch(cache_dir: Path, tmp_path: Path) -> None:
    fetched = run_without_torch("--cache-dir", str(cache_dir), "fetch", "mnist-sample")
    assert fetched.returncode == 0, fetched.stderr
    assert Path(fetched.stdout.strip().splitlines()[-1]).is_file()
    text = run_without_torch("--cache-dir", str(cache_dir), "fetch", "gutenberg-sample")
    assert text.returncode == 0, text.stderr
    info = run_without_torch("--cache-dir", str(cache_dir), "info", "mnist-sample")
    assert info.returncode == 0 and "images" in info.stdout
    png = tmp_path / "p.png"
    preview = run_without_torch("--cache-dir", str(cache_dir), "preview", "mnist-sample",
                                "--out", str(png))
    assert preview.returncode == 0 and png.stat().st_size > 0


def test_train_baseline_without_torch_is_a_clear_error(cache_dir: Path) -> None:
    proc = run_without_torch("--cache-dir", str(cache_dir), "train-baseline", "mlp",
                             "mnist-sample")
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "torch" in proc.stderr
    assert "pip install" in proc.stderr and "Traceback" not in proc.stderr
