"""Federated averaging (FedAvg, McMahan et al. 2017), simulated in one process.

Each client trains a copy of the global model on its own shard for a few local epochs; the server averages
the clients' weights in proportion to their sample counts. Five local epochs by default (McMahan et al.'s E = 5):
with one, a client holding ~120 digits takes ~4 steps a round, and 20 rounds were ~80 server steps against
~800 for centralised training (0.64 vs 0.996 test accuracy on digits, 10 clients, Dirichlet 0.5; 0.978 with five). Clients run one after another in this process
(no torch.distributed): the arithmetic is the same as with separate processes, the wall time is not.
With `--private`, the server adds client-level differential privacy (DP-FedAvg, McMahan et al. 2018): each
client's update is clipped to `max_update_norm`, the clipped updates are averaged with equal weights, and Gaussian
noise calibrated by Opacus's RDP accountant (every client takes part in every round) keeps the whole run
within (epsilon, delta) for any one client's data. That noise comes from `SecureRandom` (OS entropy), never from
the seed, so a run cannot be replayed to subtract it. A tokenizer fitted on the clients' pooled text would leave
their data through its vocabulary: federate refuses one (tasks name their way out, such as --tokenizer-data).
The clients train and the global model is evaluated at the verb's placement (`--device`, `--precision`, opened by the
api): the model on that device, batches moved by the task, bf16 / fp16 under autocast (fp16 with a gradient scaler).
Client-level DP is unaffected by the precision: updates are clipped and noised in float64 on the fp32 weights.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..artifact import Artifact, save_artifact
from ..config import check
from ..config import field as opt
from ..device import current, grad_scaler, model_device, place_model
from ..errors import DataError, refuse_existing
from ..loop import Loop, task_loss
from ..progress import progress_bar
from ..report import Report, figure_html, table_html
from ..tasks.base import Task
from .config import PrivacyConfig
from .privacy import epsilon_for, noise_for, refuse_fitted_state
from .secure_random import SecureRandom


@dataclass(frozen=True)
class FederateConfig:
    clients: int = opt(10, "number of simulated clients")
    rounds: int = opt(20, "rounds of local training + server averaging")
    local_epochs: int = opt(5, "epochs each client trains per round (McMahan et al.'s E; 1 leaves small shards a few steps a round)")
    split: Literal["iid", "dirichlet"] = opt("iid", "how the training split is dealt: iid, or by label with a Dirichlet prior")
    dirichlet_alpha: float = opt(0.5, "--split dirichlet: the concentration (smaller: more skewed label mixes per client)")
    batch_size: int = opt(32, "examples per local step")
    lr: float = opt(0.05, "local learning rate")
    optimizer: Literal["sgd", "adamw"] = opt("sgd", "local optimizer: sgd (with --momentum) or adamw, fresh each round")
    momentum: float = opt(0.9, "SGD momentum inside a round (0 for plain SGD)")
    seed: int = opt(0, "seed for the split, the deal, initialisation and shuffling")
    eval_batch_size: int = opt(256, "examples per evaluation step")
    max_update_norm: float = opt(1.0, "--private: each client's update is clipped to this L2 norm before averaging")

    def __post_init__(self):
        check(self.clients >= 1, f"--clients {self.clients} is out of range; use a whole number >= 1.")
        check(self.rounds >= 1, f"--rounds {self.rounds} is out of range; use a whole number >= 1.")
        check(self.local_epochs >= 1, f"--local-epochs {self.local_epochs} is out of range; use a whole number >= 1.")
        check(self.dirichlet_alpha > 0, f"--dirichlet-alpha {self.dirichlet_alpha} is out of range; use a positive number.")
        check(self.max_update_norm > 0, f"--max-update-norm {self.max_update_norm} is out of range; use a positive number.")
        check(self.batch_size >= 1, f"--batch-size {self.batch_size} is out of range; use a whole number >= 1.")
        check(self.lr > 0, f"--lr {self.lr} is out of range; use a positive number.")
        check(0 <= self.momentum < 1, f"--momentum {self.momentum} is out of range; use a number in [0, 1).")


def deal(labels: np.ndarray, clients: int, split: str, alpha: float, seed: int) -> list[np.ndarray]:
    """Indices of the training split per client: shuffled evenly (iid) or per label by Dirichlet(alpha) shares."""
    rng = np.random.default_rng(seed)
    if split == "iid":
        return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), clients)]
    shards: list[list[int]] = [[] for _ in range(clients)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        shares = rng.dirichlet(np.full(clients, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
        for k, part in enumerate(np.split(idx, cuts)):
            shards[k].extend(part.tolist())
    return [np.sort(np.asarray(s, dtype=int)) for s in shards]


def local_train(task: Task, model: torch.nn.Module, dataset, config: FederateConfig, seed: int) -> torch.nn.Module:
    """One client's round: `local_epochs` over its shard, from the global weights (the one loop), on the model's
    device at the verb's precision."""
    torch.manual_seed(seed)  # same seed for every client of a round: identical clients stay identical
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = (torch.optim.SGD(params, lr=config.lr, momentum=config.momentum) if config.optimizer == "sgd"
                 else torch.optim.AdamW(params, lr=config.lr))

    def shard(epoch: int, first: int):
        g = torch.Generator().manual_seed(seed * 1000 + epoch - 1)
        return DataLoader(dataset, batch_size=config.batch_size, shuffle=True, generator=g, collate_fn=task.collate)

    device = model_device(model)
    Loop(model, optimizer, shard, task_loss(task), config.local_epochs,
         transforms=[lambda batch, at: task.to_device(batch, device)],
         scaler=grad_scaler(current().precision, device)).run()
    return model


def fedavg(states: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Weighted average of client weights (floating tensors); other buffers come from the first client."""
    total = float(sum(weights))
    out = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            out[name] = sum(s[name].double() * (w / total) for s, w in zip(states, weights)).to(first.dtype)
        else:
            out[name] = first.clone()
    return out


def private_average(global_state, states, clip: float, sigma: float, rng: SecureRandom):
    """DP-FedAvg: clip each client's update to `clip` (L2 over all weights), average equally, add N(0, (sigma clip / K)^2)."""
    names = [n for n, t in global_state.items() if t.is_floating_point()]
    updates = []
    for s in states:
        delta = {n: s[n].double() - global_state[n].double() for n in names}
        norm = torch.sqrt(sum((d ** 2).sum() for d in delta.values())).item()
        scale = min(1.0, clip / max(norm, 1e-12))
        updates.append({n: d * scale for n, d in delta.items()})
    k = len(states)
    out = dict(global_state)
    for n in names:
        mean = sum(u[n] for u in updates) / k
        noise = rng.normal(mean.shape, sigma * clip / k, dtype=torch.float64, device=mean.device)
        out[n] = (global_state[n].double() + mean + noise).to(global_state[n].dtype)
    return out


def run_rounds(task: Task, model: torch.nn.Module, clients: list, config: FederateConfig, sigma: float = 0.0,
               clip: float = 0.0, after_round=None) -> torch.nn.Module:
    """`config.rounds` of FedAvg over the client datasets, updating `model` in place."""
    noise = SecureRandom() if sigma else None
    for rnd in range(1, config.rounds + 1):
        # averaged, clipped and noised on the CPU in float64 (MPS has no float64), one client's weights on the device
        # at a time
        global_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        states, weights = [], []
        for data in clients:
            client = copy.deepcopy(model)
            local_train(task, client, data, config, seed=config.seed * 100_003 + rnd)
            states.append({k: v.detach().to("cpu") for k, v in client.state_dict().items()})
            del client
            weights.append(len(data))
        model.load_state_dict(private_average(global_state, states, clip, sigma, noise) if sigma else fedavg(states, weights))
        if after_round is not None:
            after_round(rnd)
    return model


@dataclass
class FederateReport(Report):
    task: str
    artifact: str
    artifact_id: str
    clients: int
    rounds: int
    split: str
    dirichlet_alpha: float
    client_sizes: list[int]
    history: list[dict[str, Any]]
    test: dict[str, Any]
    seconds: float
    privacy: dict[str, Any] = field(default_factory=dict)
    title = "federate"

    @classmethod
    def from_artifact(cls, artifact: Artifact) -> "FederateReport":
        m = artifact.manifest
        f = m["federated"]
        return cls(task=artifact.task, artifact=str(artifact.path), artifact_id=artifact.id, clients=f["clients"],
                   rounds=f["rounds"], split=f["split"], dirichlet_alpha=f["dirichlet_alpha"], client_sizes=f["client_sizes"],
                   history=f["history"], test=m["metrics"]["test"], seconds=m.get("run", {}).get("seconds", 0.0),
                   privacy=m.get("privacy", {}))

    def gate_metrics(self) -> dict[str, Any]:
        out = {k: v for k, v in self.test.items() if not isinstance(v, (list, dict))}
        return {**out, **({"epsilon": self.privacy["epsilon"]} if self.privacy else {})}

    def summary(self) -> str:
        acc = self.test.get("accuracy")
        dp = f"; client-level epsilon {self.privacy['epsilon']:.3f}" if self.privacy else ""
        return (f"federated {self.task}: {self.clients} clients ({self.split}"
                + (f", alpha {self.dirichlet_alpha:g}" if self.split == "dirichlet" else "") + f"), {self.rounds} rounds in {self.seconds:.1f} s"
                + (f"; test accuracy {acc:.4f}" if acc is not None else "") + dp
                + f"\nartifact {self.artifact} (id {self.artifact_id})")

    def html(self) -> str:
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        key = next((k for k in (self.history[0] if self.history else {}) if k.startswith("val_") and k != "val_loss"), "val_loss")
        a.plot([h["round"] for h in self.history], [h[key] for h in self.history], marker="o")
        a.set_xlabel("round"); a.set_ylabel(key.replace("_", " ")); a.grid(alpha=.3)
        b.bar(range(len(self.client_sizes)), self.client_sizes)
        b.set_xlabel("client"); b.set_ylabel("training examples")
        facts = [("clients", self.clients), ("split", self.split + (f" (alpha {self.dirichlet_alpha:g})" if self.split == "dirichlet" else "")),
                 ("rounds", self.rounds), ("simulation", "one process, clients in turn"), ("time", f"{self.seconds:.1f} s"),
                 *[(f"test {k}", v) for k, v in self.test.items() if isinstance(v, float)],
                 *([("client-level epsilon (delta)", f"{self.privacy['epsilon']:.3f} ({self.privacy['delta']:g})")] if self.privacy else [])]
        return (f"<section><h2>Federated averaging · {self.task}</h2>{table_html(facts)}"
                f"<div class=figs>{figure_html(fig, 'accuracy per round and shard sizes')}</div></section>")


def federate(task: Task, config: FederateConfig, out: str | Path, privacy: PrivacyConfig | None = None,
             show_progress: bool = True) -> Artifact:
    """Run FedAvg on `task` and write the global model as an artifact (per-round metrics in its manifest)."""
    out = refuse_existing(out)
    refuse_fitted_state(task, "federate")
    torch.manual_seed(config.seed)
    splits = task.prepare(config.seed)
    labels = np.asarray([int(splits.train[i]["labels"]) for i in range(len(splits.train))])
    shards = deal(labels, config.clients, config.split, config.dirichlet_alpha, config.seed)
    if sum(len(s) > 0 for s in shards) == 0 or len(splits.val) == 0:
        raise DataError("the training or validation split is empty; give more data.")
    model = place_model(task.build_model(task.model_config()))  # at the verb's device (tamer.device.placed)
    sigma = 0.0
    if privacy is not None and privacy.private:
        sigma = noise_for(privacy.epsilon, privacy.delta, 1.0, config.rounds)
    history, started = [], time.perf_counter()
    with progress_bar(show_progress) as bar:
        job = bar.add_task("federate", total=config.rounds)

        def after_round(rnd: int) -> None:
            val = task.evaluate(model, splits.val, config.eval_batch_size)
            row = {"round": rnd, "val_loss": val["loss"], f"val_{task.metric}": val[task.metric]}
            if sigma:
                row["epsilon"] = epsilon_for(sigma, 1.0, rnd, privacy.delta)
            history.append(row)
            bar.update(job, advance=1, description=f"round {rnd} val {task.metric} {val[task.metric]:.4f}")

        clients = [Subset(splits.train, shard.tolist()) for shard in shards if len(shard)]
        run_rounds(task, model, clients, config, sigma=sigma, clip=config.max_update_norm if sigma else 0.0,
                   after_round=after_round)
    seconds = time.perf_counter() - started
    model.eval()
    test = task.evaluate(model, splits.test, config.eval_batch_size)
    device = model_device(model)
    peak_accelerator = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    model.cpu()
    import dataclasses

    record = {}
    if sigma:
        record = {"privacy": {"level": "client", "epsilon": history[-1]["epsilon"], "epsilon_target": privacy.epsilon,
                              "delta": privacy.delta, "noise_multiplier": sigma, "max_update_norm": config.max_update_norm,
                              "accountant": "rdp (opacus), sample rate 1",
                              "noise_source": "os entropy (AES-256-CTR), not the seed"}}
    return save_artifact(
        out, model.state_dict(), task=task.to_manifest(), model_config=task.model_config(), verb="federate",
        options={**dataclasses.asdict(config), **({"private": True, "epsilon": privacy.epsilon, "delta": privacy.delta} if sigma else {})},
        metrics={"test": test}, write_files=task.write_files,
        extra={"federated": {"clients": config.clients, "rounds": config.rounds, "split": config.split,
                             "dirichlet_alpha": config.dirichlet_alpha, "client_sizes": [len(s) for s in shards], "history": history,
                             "simulation": "one process"},
               "run": {"seconds": seconds, "data_files": task.data_files, "device": str(device),
                       "computed_in": sorted(current().computed), "peak_accelerator_bytes": peak_accelerator}, **record})
