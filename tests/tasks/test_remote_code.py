"""Nothing from a model folder runs: a config naming custom code (`auto_map`) is refused with one sentence."""
import json
from pathlib import Path

import pytest

from tamer.cli import main
from tamer.errors import UsageError
from tamer.tasks.pretrained import pretrained_config, pretrained_model, pretrained_tokenizer
from tamer.tasks.vocab import load_tokenizer, train_tokenizer

SRC = Path(__import__("tamer").__file__).resolve().parent


def _model_folder(folder: Path, auto_map_in: str) -> Path:
    """A tiny BERT folder (config + tokenizer) whose `auto_map_in` config names a module that would leave a mark."""
    train_tokenizer(["great food", "cold and rude"] * 10, "wordpiece", 60).save_pretrained(str(folder))
    config = {"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
              "intermediate_size": 32, "vocab_size": 60}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(f"open({str(folder / 'RAN')!r}, 'w').write('code from the folder ran')\n"
                                    "from transformers import BertConfig, BertModel, PreTrainedTokenizerFast\n"
                                    "class EvilConfig(BertConfig): pass\nclass EvilModel(BertModel): pass\n"
                                    "class EvilTokenizer(PreTrainedTokenizerFast): pass\n")
    target = folder / auto_map_in
    settings = json.loads(target.read_text())
    settings["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel",
                            "AutoTokenizer": ["evil.EvilTokenizer", None]}
    target.write_text(json.dumps(settings))
    return folder


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_every_hugging_face_load_refuses_a_folder_with_auto_map(tmp_path, where):
    folder = _model_folder(tmp_path / "model", where)
    for load in (load_tokenizer, pretrained_tokenizer, pretrained_config, pretrained_model):
        with pytest.raises(UsageError, match=f"{where} in model folder .* asks Hugging Face to run code"):
            load(folder)
    assert not (folder / "RAN").exists()


@pytest.mark.parametrize("verb, option", [("text-classification", "--encoder"), ("causal-lm", "--model")])
@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_the_cli_refuses_it_in_one_sentence_with_exit_2(tmp_path, capsys, verb, option, where):
    folder = _model_folder(tmp_path / "model", where)
    data = tmp_path / ("d.tsv" if verb == "text-classification" else "d.txt")
    data.write_text("".join(f"great food {i}\t{i % 2}\n" for i in range(20)))
    code = main(["train", verb, "--data", str(data), option, str(folder), "--epochs", "1", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "auto_map" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (folder / "RAN").exists() and not (tmp_path / "a").exists()


def test_an_artifact_model_config_naming_code_is_refused():
    from tamer.tasks import make_task

    task = make_task("text-classification", {"encoder": "tiny"})
    encoder = {"model_type": "bert", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
               "intermediate_size": 32, "vocab_size": 60, "auto_map": {"AutoModel": "evil.EvilModel"}}
    with pytest.raises(UsageError, match="auto_map"):
        task.build_model({"arch": "EncoderClassifier", "encoder": encoder, "num_labels": 2, "labels": ["0", "1"]})


def test_only_the_pretrained_module_calls_from_pretrained():
    """Every Hugging Face load goes through tasks/pretrained.py, which passes trust_remote_code=False."""
    callers = [p.relative_to(SRC).as_posix() for p in SRC.rglob("*.py")
               if "from_pretrained" in p.read_text() and p.name != "pretrained.py"]
    assert callers == []
    text = (SRC / "tasks" / "pretrained.py").read_text()
    assert '"trust_remote_code": False' in text and "trust_remote_code=False" in text
