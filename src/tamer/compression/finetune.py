"""A short fine-tune after pruning (masks kept) or for a distilled student: the one loop, with the masks
re-applied after every optimizer step."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..loop import Loop, ProgressBar, task_loss
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

    @torch.no_grad()
    def keep_masks() -> None:
        for name, mask in (masks or {}).items():
            params[name].mul_(mask)

    with progress_bar(progress) as bar:
        job = bar.add_task("fine-tune", total=epochs * len(loader))
        Loop(model, opt, loader, loss_fn or task_loss(task), epochs, after_step=[keep_masks] if masks else (),
             callbacks=[ProgressBar(bar, job)]).run()
    return model.eval()
