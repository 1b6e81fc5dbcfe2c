"""Every verb on every kind of artifact (issue 14): fp32, int8, int4, pruned, distilled and sealed children of one
digits model. Each run ends with exit 0, or with exit 2 and one sentence; never a traceback, never an internal error."""
import pytest

import tamer
import tamer.api
from tamer.cli import main

KINDS = ("fp32", "int8", "int4", "pruned", "distilled", "sealed")


@pytest.fixture(scope="module")
def family(digits_artifact, tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    key = tamer.keygen(root / "k.key")
    arts = {"fp32": digits_artifact.path}
    for kind, options in {"int8": {"quantize": "int8"}, "int4": {"quantize": "int4"}, "pruned": {"prune": 0.5},
                          "distilled": {"distill_into": "hidden=32,channels=8", "distill_epochs": 1}}.items():
        tamer.compress(digits_artifact, out=root / kind, progress=False, **options)
        arts[kind] = root / kind
    tamer.encrypt(digits_artifact, key_file=str(key), out=root / "sealed")
    arts["sealed"] = root / "sealed"
    return arts, key


def _argv(verb, kind, path, key, out):
    sealed = ["--key-file", str(key)] if kind == "sealed" else []
    return {
        "evaluate": ["evaluate", str(path), *sealed],
        "explain": ["explain", str(path), "--index", "0", "--n-steps", "16", "--max-steps", "32", "--out", str(out), *sealed],
        "compress": ["compress", str(path), "--quantize", "int8", "--out", str(out), *sealed],
        "encrypt": ["encrypt", str(path), "--out", str(out), "--key-file", str(key)],
        "decrypt": ["decrypt", str(path), "--out", str(out), "--key-file", str(key)],
        "attack": ["attack", str(path), "--method", "pgd", "--steps", "3", "--limit", "20", *sealed],
        "harden": ["harden", str(path), "--epochs", "1", "--steps", "1", "--eval-steps", "2", "--limit", "20",
                   "--out", str(out), *sealed],
        "stability": ["stability", str(path), "--limit", "40", "--calibrate", "--out", str(out), *sealed],
    }[verb]


# (verb, kind) pairs that are refused by design, with exit 2 and a sentence saying why
REFUSED = {("encrypt", "sealed"), ("compress", "int8"), ("compress", "int4"), ("harden", "int8"), ("harden", "int4"), *(("decrypt", k) for k in KINDS if k != "sealed")}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("verb", ["evaluate", "explain", "compress", "encrypt", "decrypt", "attack", "harden", "stability"])
def test_every_verb_on_every_artifact_kind_exits_cleanly(family, verb, kind, tmp_path, capsys):
    arts, key = family
    code = main(_argv(verb, kind, arts[kind], key, tmp_path / "out"))
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    if (verb, kind) in REFUSED:
        assert code == 2 and err.startswith("tamer: error: ") and err.count("\n") == 1, err
    else:
        assert code == 0, err


def test_an_unexpected_failure_is_one_line_and_the_traceback_needs_debug(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("something inside broke\nover two lines")

    monkeypatch.setattr(tamer.api, "evaluate", broken)
    assert main(["evaluate", "nowhere"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1
    assert err.startswith("tamer: error: internal error in `tamer evaluate` (RuntimeError: something inside broke over")
    with pytest.raises(RuntimeError):
        main(["evaluate", "nowhere", "--debug"])
