"""The Task protocol: what a model is for (the registry of tasks by name is registry.py)."""
from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset

from ..cost import examples_in, flop_probe
from ..device import autocast, computed, model_device
from ..errors import UsageError
from .meters import ClassificationMeter, LanguageModelMeter, Meter, RegressionMeter

if TYPE_CHECKING:
    from ..artifact import Artifact


@dataclass
class Splits:
    train: Dataset
    val: Dataset
    test: Dataset


class ListDataset(Dataset):
    """Examples held in memory (a list of dicts of tensors / numbers)."""

    def __init__(self, examples: Sequence[Any]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        return self.examples[i]


class Task(ABC):
    """What a model is for. Subclass it, set `name`, `Config`, and register it with `@register_task`.

    Life cycle: `prepare(seed)` reads the data (and builds whatever the data decides, such as the label
    names or a tokenizer); `model_config()` then describes the model to build; `write_files(folder)`
    saves that state beside the weights, and `restore(artifact, model_config)` reads it back through
    `artifact.read_bytes(name)` (a sealed artifact's files are in memory: they have no folder).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    kind: ClassVar[str] = "classification"  # classification | language-model | regression
    metric: ClassVar[str] = "accuracy"  # the validation metric that early stopping follows
    higher_is_better: ClassVar[bool] = True
    # config options that name files: recorded as absolute paths (`data_files`, under the manifest's `run`), so an
    # artifact finds its data from any working directory
    path_options: ClassVar[tuple[str, ...]] = ("data",)
    # set by `relocate` on a task restored from an artifact (reassigned, never mutated: these are shared defaults)
    typed_paths: dict[str, str] = {}  # file options as the user typed them, where `config` holds the recorded paths
    moved: dict[str, str] = {}  # recorded data files no longer on disk, by option

    @dataclass(frozen=True)
    class Config:
        data: str | None = None

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()
        self._data_files = self._resolve_files()  # now, against the working directory the options were given in

    def _resolve_files(self) -> dict[str, str]:
        return {name: os.path.abspath(os.path.expanduser(value)) for name in self.path_options
                if isinstance(value := getattr(self.config, name, None), str) and value}

    @property
    def data_files(self) -> dict[str, str]:
        """The absolute path of each file option given: resolved when the task was made, or recorded by the artifact
        it was restored from."""
        if "_data_files" not in self.__dict__:  # a subclass whose __init__ did not call Task's
            self._data_files = self._resolve_files()
        return self._data_files

    def relocate(self, data_files: dict[str, str]) -> None:
        """Read the files an artifact recorded (absolute paths) instead of the options as typed, which may have been
        relative to another working directory; the manifest (`to_manifest`, the id) keeps what was typed."""
        found = {k: v for k, v in data_files.items() if k in self.path_options and getattr(self.config, k, None)}
        if not found:
            return
        self.typed_paths = {**{k: getattr(self.config, k) for k in found}, **self.typed_paths}
        self._data_files = {**self.data_files, **found}
        self.config = dataclasses.replace(self.config, **found)
        self.moved = {k: v for k, v in found.items() if not os.path.isfile(v)}

    # -- data ---------------------------------------------------------------------------
    @abstractmethod
    def prepare(self, seed: int) -> Splits:
        """Read `config.data` (or the built-in data) and split it by seed."""

    def splits(self, seed: int) -> Splits:
        """`prepare(seed)` for a task restored from an artifact: refused in one sentence when the data file its split
        is drawn from is no longer where the artifact recorded it."""
        if "data" in self.moved:
            typed = self.typed_paths.get("data", self.moved["data"])
            raise UsageError(f"the data file this artifact was trained on ({typed!r}) is no longer at "
                             f"{self.moved['data']}, so its test split cannot be drawn; put the file back there, or "
                             f"evaluate on a file of your own with `tamer evaluate ARTIFACT --data FILE`.")
        return self.prepare(seed)

    def load_eval(self, path: str) -> Dataset:
        """A whole data file as one evaluation set, encoded with the state from `prepare`/`restore`."""
        raise UsageError(f"task {self.name!r} does not evaluate on a data file; drop --data.")

    def raw_inputs(self, path: str | None) -> Any:
        """The inputs of a data file (None: the built-in data) as `encode` takes them, labels dropped: texts, or an
        array of images. What a drift test compares."""
        raise UsageError(f"task {self.name!r} cannot read raw inputs from a data file.")

    @abstractmethod
    def collate(self, examples: list[Any]) -> dict[str, torch.Tensor]:
        """Stack examples into a batch: model inputs plus `labels`."""

    def encode(self, inputs: Any) -> dict[str, torch.Tensor]:
        """Raw inputs (texts, images) -> a batch without labels, for explain and serve."""
        raise UsageError(f"task {self.name!r} cannot encode raw inputs.")

    # -- model --------------------------------------------------------------------------
    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """JSON description of the model, enough for `build_model` to rebuild it."""

    @abstractmethod
    def build_model(self, model_config: dict[str, Any]) -> nn.Module:
        ...

    def write_files(self, folder: Path) -> None:
        """Save state other than weights (a tokenizer, say) into an artifact folder."""

    def restore(self, artifact: Artifact, model_config: dict[str, Any]) -> None:
        """Read back what `write_files` saved, with `artifact.read_bytes(name)` (name relative to the folder)."""

    # -- compute ------------------------------------------------------------------------
    def to_device(self, batch: dict[str, Any], where: nn.Module | torch.device) -> dict[str, Any]:
        """`batch` with every tensor on `where` (a device, or a model's device): the one place batches move."""
        device = where if isinstance(where, torch.device) else model_device(where)
        return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) and v.device != device else v
                for k, v in batch.items()}

    def forward(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's output on `batch`: the inputs moved to the model's device, run at the verb's precision
        (autocast), the output in fp32 (losses and metrics in full precision) and on the device the batch came on.
        The loop and `evaluate` move their batches first, so nothing comes back; code that builds its tensors on the
        CPU (attacks, explanations) gets CPU outputs, with gradients through the copies, and never meets the device."""
        device = model_device(model)
        back = next((v.device for v in batch.values() if torch.is_tensor(v)), device)
        inputs = {k: v for k, v in self.to_device(batch, device).items() if k != "labels"}
        with autocast(device), flop_probe(examples_in(inputs)):
            out = model(**inputs)
        if torch.is_tensor(out):
            computed(out.dtype)  # what autocast made of it, for the report (`cost.computed_in`)
            out = out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
            out = out.to(back) if out.device != back else out
        return out

    def loss(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        labels = batch["labels"].to(outputs.device)
        if self.kind == "regression":
            return nn.functional.mse_loss(outputs.squeeze(-1), labels.float())
        return nn.functional.cross_entropy(outputs, labels)

    def example_losses(self, outputs: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """`loss` per example (its mean is `loss`), for methods that weigh examples apart, such as DP clipping."""
        labels = batch["labels"].to(outputs.device)
        if self.kind == "regression":
            each = nn.functional.mse_loss(outputs.squeeze(-1), labels.float(), reduction="none")
        else:
            each = nn.functional.cross_entropy(outputs, labels, reduction="none")
        return each.reshape(len(each), -1).mean(1)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, dataset: Dataset, batch_size: int = 256) -> dict[str, Any]:
        """This task's metrics of `model` over `dataset` (accuracy / macro-F1 / confusion, or perplexity)."""
        from torch.utils.data import DataLoader

        from ..errors import DataError

        if len(dataset) == 0:
            raise DataError("the evaluation set is empty; give a data file with at least one example.")
        was_training = model.training
        model.eval()
        meter = self.meter()
        device = model_device(model)
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=self.collate):
            batch = self.to_device(batch, device)  # the meter compares outputs with labels on the model's device
            outputs = self.forward(model, batch)
            meter.update(outputs, batch, self.loss(outputs, batch))
        model.train(was_training)
        return meter.result()

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: dict[str, torch.Tensor], max_new_tokens: int = 20) -> list[dict[str, Any]]:
        """One answer per example of `batch` (from `encode` or `collate`): a classifier's label, its probability and
        every label's (what a Hugging Face pipeline returns); a regressor's value."""
        model.eval()
        out = self.forward(model, batch).float()
        if self.kind == "regression":
            return [{"value": float(v)} for v in out.reshape(len(out), -1)[:, 0]]
        probs = out.softmax(-1)
        names = list(getattr(self, "labels", None) or []) or [str(i) for i in range(probs.shape[-1])]
        return [{"label": names[int(p.argmax())], "score": float(p.max()),
                 "probabilities": {n: float(v) for n, v in zip(names, p)}} for p in probs]

    def meter(self) -> Meter:
        kinds = {"classification": ClassificationMeter, "language-model": LanguageModelMeter,
                 "regression": RegressionMeter}
        return kinds[self.kind](self)

    def train_defaults(self) -> dict[str, Any]:
        """Epochs, batch size and learning rate that work for this task's default model."""
        return {"epochs": 10, "batch_size": 32, "lr": 1e-3}

    # -- privacy ------------------------------------------------------------------------
    def fitted_on_training_data(self) -> dict[str, str]:
        """State other than weights that `prepare` fits on the training split (a tokenizer's vocabulary), each with
        how to avoid it. DP and federated training refuse it: it is outside any privacy guarantee."""
        return {}

    def private_frozen(self, model_config: dict[str, Any]) -> tuple[str, ...]:
        """Prefixes of parameter names DP-SGD leaves at their public, pretrained values (fewer noisy weights)."""
        return ()

    def private_train_defaults(self) -> dict[str, Any]:
        """Epochs, batch size and learning rate for DP-SGD where the general ones (protection/privacy.py) do not suit."""
        return {}

    def to_manifest(self) -> dict[str, Any]:
        """Name and options as the user gave them (file options as typed: the id does not depend on the machine);
        the absolute paths go under the manifest's `run` as `data_files`."""
        return {"name": self.name, "config": {**dataclasses.asdict(self.config), **self.typed_paths}}
