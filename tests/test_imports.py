"""`import tamer` is light: the public API is complete, the protection verbs never load torch, and the verbs
(`tamer.explain`, `tamer.compress`, ...) and the packages (nouns: `tamer.explanation`, `tamer.compression`, ...)
never share a name, so no import order can swap one for the other."""
import json
import subprocess
import sys

import pytest

import tamer
import tamer.api


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


_CLI = ("import sys; from tamer.cli import main; code = main(sys.argv[1:]); "
        "print(json.dumps({'code': code, 'torch': 'torch' in sys.modules}), file=sys.stderr)")


def _digits_artifact(out):
    """An untrained digits model saved as an artifact (no training loop: fast)."""
    import torch

    from tamer.artifact import save_artifact
    from tamer.tasks import make_task

    task = make_task("digits")
    task.prepare(0)
    torch.manual_seed(0)
    model = task.build_model(task.model_config())
    return save_artifact(out, model.state_dict(), task=task.to_manifest(), model_config=task.model_config(),
                         verb="train", options={"seed": 0})


def _cli_without_torch(*argv: str) -> dict:
    done = _python("import json; " + _CLI, *argv)
    result = json.loads(done.stderr.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return result


def test_import_tamer_does_not_load_torch():
    done = _python("import sys, tamer; print('torch' in sys.modules, sorted(tamer.__all__) == sorted(set(tamer.__all__)))")
    assert done.stdout.split() == ["False", "True"], done.stderr


def test_keygen_encrypt_decrypt_scrub_never_load_torch(tmp_path):
    art = _digits_artifact(tmp_path / "a")
    key = tmp_path / "k.key"
    assert not _cli_without_torch("keygen", "--out", str(key))["torch"]
    assert not _cli_without_torch("encrypt", str(art.path), "--key-file", str(key), "--out", str(tmp_path / "e"))["torch"]
    assert not _cli_without_torch("decrypt", str(tmp_path / "e"), "--key-file", str(key), "--out", str(tmp_path / "d"))["torch"]
    assert tamer.Artifact.load(tmp_path / "d").id == art.id
    text = tmp_path / "t.txt"
    text.write_text("write to ana@example.org\n")
    assert not _cli_without_torch("scrub", str(text), "--json")["torch"]
    assert "ana@example.org" not in (tmp_path / "t.scrubbed.txt").read_text()


def test_public_api_is_complete():
    from tamer.artifact import Artifact
    from tamer.errors import TamerError
    from tamer.tasks import Task, register_task
    from tamer.training import TrainConfig

    assert (tamer.Task, tamer.register_task, tamer.TrainConfig) == (Task, register_task, TrainConfig)
    assert (tamer.Artifact, tamer.TamerError) == (Artifact, TamerError)
    for name in tamer.__all__:
        assert getattr(tamer, name) is not None
        assert name in dir(tamer)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        tamer.nothing_here  # noqa: B018


def test_verbs_and_packages_have_their_own_names():
    import tamer.compression.quantize  # noqa: F401
    import tamer.explanation.attribute  # noqa: F401
    import tamer.tasks.base  # noqa: F401
    import tamer.training.loop  # noqa: F401

    for verb in ("compress", "explain", "list_tasks", "train"):
        assert getattr(tamer, verb) is getattr(tamer.api, verb) and callable(getattr(tamer, verb)), verb
    for noun in ("compression", "explanation", "tasks", "training", "protection"):
        assert type(getattr(tamer, noun)).__name__ == "module", noun
    assert type(sys.modules["tamer"]).__name__ == "module"  # no module-class swapping
    import tamer.compression as tc

    assert callable(tc.compiled) and tc.compress is not tamer.compress  # the package's verb is the raw one


def test_verbs_survive_in_a_fresh_process_whatever_the_import_order():
    done = _python("import tamer.explanation.attribute, tamer.compression.verb, tamer, tamer.api as a; "
                   "tamer.TrainConfig; import tamer.tasks.digits; "
                   "print(*(getattr(tamer, v) is getattr(a, v) for v in ('explain', 'compress', 'train', 'list_tasks')))")
    assert done.stdout.split() == ["True"] * 4, done.stderr
    done = _python("import tamer; print(tamer.compression.compiled.__module__)")  # README's spelling, lazily
    assert done.stdout.split() == ["tamer.compression.loading"], done.stderr


def test_a_quantized_artifact_opens_in_a_process_that_never_imported_compress(tmp_path):
    art = _digits_artifact(tmp_path / "a")
    child = tamer.compress(art, quantize="int8", out=tmp_path / "q", progress=False)
    done = _python("import sys, tamer; before = 'tamer.compression' in sys.modules; "
                   "task, model = tamer.load(sys.argv[1]).load_model(); "
                   "print(before, type(model).__name__, any(type(m).__module__ == 'tamer.compression.layers' for m in model.modules()))",
                   str(child.path))
    assert done.stdout.split() == ["False", "DigitsCNN", "True"], done.stderr
