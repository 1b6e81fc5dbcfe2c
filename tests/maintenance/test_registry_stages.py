"""Recipe stages `register` and `promote`: the promote gate is judged before the alias moves (a failed gate leaves
the alias where it was), and the run report draws the lineage."""
import pytest

import tamer
from tamer.errors import GateFailed, UsageError


@pytest.fixture
def own_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("TAMER_REGISTRY_URL", f"sqlite:///{tmp_path / 'own.db'}")


def test_register_and_promote_stages_with_a_gate_before_the_move(own_registry, digits_artifact, tmp_path):
    tamer.api.add(digits_artifact.path)  # trained under the session's registry: recorded in this one too
    recipe = {"task": "digits", "artifact": str(digits_artifact.path), "stages": [
        {"compress": {"quantize": "int8", "activations": "weight-only"}},
        {"register": {"tags": {"owner": "ci"}}},
        {"promote": {"to": "production", "reason": "recipe"}, "gate": {"accuracy": ">= 0.5"}},
        {"promote": {"to": "staging"}, "gate": {"accuracy": "> 1.0"}},
        {"evaluate": {}},
    ]}
    with pytest.raises(GateFailed, match="gate failed at stage 04-promote: accuracy = .* which is not > 1.0; the stage did not act"):
        tamer.run(recipe, out=tmp_path / "run", progress=False)
    with tamer.registry() as reg:
        aliases = reg.list_aliases()
        child = aliases["production"]
        assert "staging" not in aliases  # the failed gate moved nothing
        shown = reg.show(child)
        assert shown["parents"] == [digits_artifact.id] and shown["tags"] == {"owner": "ci"}
        assert [e["reason"] for e in reg.history("production")] == ["recipe"]
    page = (tmp_path / "run" / "report.html").read_text()
    assert page.count("<svg") == 2 and f">{digits_artifact.id}</text>" in page and ">production</text>" in page
    assert ">train · fp32</text>" in page and ">compress · int8</text>" in page  # parent and child boxes
    import json

    stages = json.loads((tmp_path / "run" / "report.json").read_text())["stages"]
    assert [s["status"] for s in stages] == ["passed", "passed", "passed", "failed", "skipped"]


def test_promote_needs_an_alias(own_registry, digits_artifact, tmp_path):
    recipe = {"task": "digits", "artifact": str(digits_artifact.path), "stages": [{"promote": {}}]}
    with pytest.raises(UsageError, match="give `to: ALIAS`"):
        tamer.run(recipe, out=tmp_path / "run", progress=False)
