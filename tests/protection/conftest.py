"""A digits artifact made without the training loop (protection/ must not depend on training/)."""
import pytest
import torch

from tamer.artifact import save_artifact
from tamer.tasks import make_task


def make_digits_artifact(out, seed: int = 0):
    task = make_task("digits")
    task.prepare(seed)
    torch.manual_seed(seed)
    model = task.build_model(task.model_config())
    test = task.evaluate(model, task.prepare(seed).test)
    return save_artifact(out, model.state_dict(), task=task.to_manifest(), model_config=task.model_config(),
                         verb="train", options={"seed": seed}, metrics={"test": test})


@pytest.fixture
def digits_artifact(tmp_path):
    return make_digits_artifact(tmp_path / "artifact")


@pytest.fixture(scope="session")
def artifact_factory():
    return make_digits_artifact
