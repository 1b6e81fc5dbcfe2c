"""A short fine-tune after pruning (masks kept) or for a distilled student; uses only the Task's loss and data."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..progress import progress_bar
from ..tasks.base import Task


def finetune(task: Task, model: nn.Module, dataset, epochs: int, lr: float | None, seed: int,
             masks: dict[str, torch.Tensor] | None = None, progress: bool = False,
             loss_fn: Callable[[nn.Module, dict], torch.Tensor] | None = None) -> nn.Module:
    """AdamW for `epochs` over `dataset`; zeroed weights in `masks` (param name -> 0/1) stay zero."""
    defaults = task.train_defaults()
    lr = lr or defaults["lr"]
    torch.manual_seed(seed)
    loader = DataLoader(dataset, batch_size=defaults["batch_size"], shuffle=True, collate_fn=task.collate,
                        generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    params = dict(model.named_parameters())
    model.train()
    with progress_bar(progress) as bar:
        job = bar.add_task("fine-tune", total=epochs * len(loader))
        for _ in range(epochs):
            for batch in loader:
                loss = loss_fn(model, batch) if loss_fn else task.loss(task.forward(model, batch), batch)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if masks:
                    with torch.no_grad():
                        for name, mask in masks.items():
                            params[name].mul_(mask)
                bar.update(job, advance=1)
    return model.eval()
