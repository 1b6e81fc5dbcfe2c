"""The README's Python examples run as written: each ```python block in a fresh process, in a temporary folder that
holds what the README's commands before it would have made (the text data under data/sentiment/, the artifacts it
opens). Those artifacts are made here with the tiny encoder instead of MiniLM, for speed: the examples do not depend
on the encoder."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SLOW = ("compiled(",)  # torch.compile: 30-90 s for the first call of each input shape


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block of the README."""
    text = README.read_text(encoding="utf-8")
    return [(text[: m.start()].count("\n") + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)]


def _yelp(root: Path) -> None:
    import tamer

    tamer.train("text-classification", data=str(root / "data/sentiment/yelp_labelled.txt"), encoder="tiny", epochs=1,
                out=root / "artifacts/yelp", progress=False)


def _yelp_int8(root: Path) -> None:
    import tamer

    if not (root / "artifacts/yelp").exists():
        _yelp(root)
    tamer.compress(root / "artifacts/yelp", quantize="int8", out=root / "artifacts/yelp-int8", progress=False)


# the artifacts the README's commands make, which its Python examples open: name -> (needs the text data, maker)
MAKERS = {"artifacts/yelp": (True, _yelp), "artifacts/yelp-int8": (True, _yelp_int8)}


def _params():
    out = []
    for line, code in python_blocks():
        marks = [pytest.mark.slow] if any(s in code for s in SLOW) else []
        out.append(pytest.param(code, id=f"README.md:{line}", marks=marks))
    return out


def test_the_readme_has_python_examples():
    assert len(python_blocks()) >= 2


@pytest.mark.parametrize("code", _params())
def test_readme_example_runs_as_written(code, tmp_path, request):
    written = set(re.findall(r"""out=["'](artifacts/[^"']+)["']""", code))
    opened = sorted(set(re.findall(r"""["'](artifacts/[^"']+)["']""", code)) - written)
    unknown = [name for name in opened if name not in MAKERS]
    assert not unknown, f"the example opens {unknown[0]!r}, which tests/test_readme.py's MAKERS cannot make; add it there"
    if "data/sentiment/" in code or any(MAKERS[name][0] for name in opened):
        sentiment = request.getfixturevalue("sentiment_dir")  # skips, saying so, where ../shared/data is absent
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "sentiment").symlink_to(sentiment, target_is_directory=True)
    for name in opened:
        if not (tmp_path / name).exists():
            MAKERS[name][1](tmp_path)
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"the README example failed:\n{code}\n{done.stderr[-3000:]}"
