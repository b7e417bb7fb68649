"""Every Python example in README.md runs as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)                 # the example writes a checkpoint
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), {})
    if "save_checkpoint" in BLOCKS[index]:
        assert (tmp_path / "spiral.json").is_file()
        loss = float(capsys.readouterr().out.split("loss ")[1])
        assert loss < 0.5                      # it trained
