"""`tamer drift --artifact` on compressed and sealed children: the embeddings come from whatever last linear layer
the child has (int8, pruned), a sealed one opens with its key, a language model or a mismatched input is refused."""
import numpy as np
import pytest

import tamer
from tamer.cli import main


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("drift-images")
    data = load_digits().images.astype(np.float32)
    np.save(root / "a.npy", data[:300])
    np.save(root / "b.npy", data[300:600])
    return root


@pytest.mark.parametrize("options", [{"quantize": "int8"}, {"prune": 0.5}])
def test_compressed_children_give_embeddings(digits_artifact, images, tmp_path, options, capsys):
    child = tamer.compress(digits_artifact, out=tmp_path / "c", progress=False, **options)
    report = tamer.drift(images / "a.npy", images / "b.npy", artifact=child, permutations=50)
    assert report.features == f"embeddings of artifact {child.id}" and 0 < report.p_value <= 1


def test_a_sealed_artifact_opens_with_its_key(digits_artifact, images, tmp_path, capsys):
    key = tamer.keygen(tmp_path / "k.key")
    tamer.encrypt(digits_artifact, key_file=str(key), out=tmp_path / "s")
    assert main(["drift", "--reference", str(images / "a.npy"), "--current", str(images / "b.npy"), "--artifact",
                 str(tmp_path / "s"), "--key-file", str(key), "--permutations", "50", "--json"]) == 0
    assert main(["drift", "--reference", str(images / "a.npy"), "--current", str(images / "b.npy"), "--artifact",
                 str(tmp_path / "s"), "--permutations", "50"]) == 2


def test_sentences_through_an_image_model_are_refused_in_one_sentence(digits_artifact, tmp_path, capsys):
    (tmp_path / "a.txt").write_text("good food\nbad service\nfine\n")
    code = main(["drift", "--reference", str(tmp_path / "a.txt"), "--current", str(tmp_path / "a.txt"),
                 "--artifact", str(digits_artifact.path)])
    err = capsys.readouterr().err
    assert code == 2 and "cannot read this data" in err and err.count("\n") == 1, err
