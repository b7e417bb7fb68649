"""`python -m fastgrad demo`: it trains, checks its checkpoint, and says so."""

import json
import subprocess
import sys

import pytest

from fastgrad.__main__ import main


def test_demo_trains_both_models_and_verifies_the_checkpoint(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--quiet", "--no-plot"]) == 0
    out = capsys.readouterr().out
    moons = next(line for line in out.splitlines() if line.startswith("moons:"))
    spiral = next(line for line in out.splitlines() if line.startswith("spiral:"))
    # micrograd's demo reaches 100% on two-moons; the spiral model must learn too
    assert "accuracy 100%" in moons
    acc = int(spiral.split("accuracy ")[1].split("%")[0])
    assert acc >= 90
    assert "predictions identical" in out
    ckpt = json.loads((tmp_path / "fastgrad-demo-ckpt.json").read_text())
    assert ckpt["format"] == "fastgrad-checkpoint"
    assert ckpt["optimizer"]["type"] == "Adam"


def test_demo_writes_a_png_when_matplotlib_is_installed(tmp_path):
    pytest.importorskip("matplotlib")
    assert main(["demo", "--steps", "3", "--epochs", "1", "--out", str(tmp_path), "--quiet"]) == 0
    png = tmp_path / "fastgrad-demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_entry_point_and_errors(tmp_path):
    run = subprocess.run([sys.executable, "-m", "fastgrad", "demo", "--steps", "2",
                          "--epochs", "1", "--out", str(tmp_path), "--no-plot"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "done in" in run.stdout
    bad = subprocess.run([sys.executable, "-m", "fastgrad", "train"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert "unknown command 'train'" in bad.stderr
    with pytest.raises(SystemExit):
        main(["demo", "--steps", "0"])
