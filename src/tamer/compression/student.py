"""The student of a distillation: its config from a size spec, and its start from the teacher.

The student starts from the teacher, as DistilBERT (Sanh et al. 2019) does: block j copies teacher block m(j)
(every k-th block), and a narrower student is the teacher width-pruned as Minitron (Muralidharan et al. 2024) does:
the same most-active residual channels in every tensor, the most-active heads and MLP neurons of each block.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..errors import UsageError
from ..tasks.base import Task

# arch -> the sub-config holding the transformer sizes, spec key -> config key, the block prefix in the state dict,
# the modules (inside a block) whose input is the attention / MLP width, and what each dim of a weight indexes:
# "ch" a residual-stream channel, "att" an attention channel (a head's slice), "att3" the same packed q|k|v,
# "mlp" an MLP neuron, None a dim that is never narrowed (vocabulary, positions, classes).
_BERT_BLOCK = {
    **{f"attention.self.{m}.weight": ("att", "ch") for m in ("query", "key", "value")},
    **{f"attention.self.{m}.bias": ("att",) for m in ("query", "key", "value")},
    "attention.output.dense.weight": ("ch", "att"), "attention.output.dense.bias": ("ch",),
    "attention.output.LayerNorm.weight": ("ch",), "attention.output.LayerNorm.bias": ("ch",),
    "intermediate.dense.weight": ("mlp", "ch"), "intermediate.dense.bias": ("mlp",),
    "output.dense.weight": ("ch", "mlp"), "output.dense.bias": ("ch",),
    "output.LayerNorm.weight": ("ch",), "output.LayerNorm.bias": ("ch",)}
_GPT2_BLOCK = {
    "ln_1.weight": ("ch",), "ln_1.bias": ("ch",), "ln_2.weight": ("ch",), "ln_2.bias": ("ch",),
    "attn.c_attn.weight": ("ch", "att3"), "attn.c_attn.bias": ("att3",),
    "attn.c_proj.weight": ("att", "ch"), "attn.c_proj.bias": ("ch",),
    "mlp.c_fc.weight": ("ch", "mlp"), "mlp.c_fc.bias": ("mlp",),
    "mlp.c_proj.weight": ("mlp", "ch"), "mlp.c_proj.bias": ("ch",)}
TRANSFORMERS: dict[str, dict[str, Any]] = {
    "EncoderClassifier": {
        "sub": "encoder",
        "keys": {"layers": "num_hidden_layers", "hidden": "hidden_size", "intermediate": "intermediate_size",
                 "heads": "num_attention_heads"},
        "blocks": "encoder.encoder.layer.", "att_out": "attention.output.dense",
        "mlp_in": "intermediate.dense", "mlp_out": "output.dense",
        "block_roles": _BERT_BLOCK,
        "roles": {"encoder.embeddings.word_embeddings.weight": ("vocab", "ch"),
                  **{f"encoder.embeddings.{t}_embeddings.weight": (None, "ch") for t in ("position", "token_type")},
                  "encoder.embeddings.LayerNorm.weight": ("ch",), "encoder.embeddings.LayerNorm.bias": ("ch",),
                  "head.weight": (None, "ch")}},
    "CausalLM": {
        "sub": "decoder",
        "keys": {"layers": "n_layer", "hidden": "n_embd", "intermediate": "n_inner", "heads": "n_head"},
        "blocks": "model.transformer.h.", "att_out": "attn.c_proj", "mlp_in": "mlp.c_fc",
        "mlp_out": "mlp.c_proj",
        "block_roles": _GPT2_BLOCK,
        "roles": {"model.transformer.wte.weight": (None, "ch"), "model.transformer.wpe.weight": (None, "ch"),
                  "model.transformer.ln_f.weight": ("ch",), "model.transformer.ln_f.bias": ("ch",),
                  "model.lm_head.weight": (None, "ch")}},
}
_NOT_SIZES = ("num_classes", "num_labels")


def student_config(model_config: dict[str, Any], sizes: dict[str, int], spec: str) -> dict[str, Any]:
    """The teacher's model config with the sizes the spec names replaced (heads and MLP width follow a new width)."""
    arch = model_config.get("arch")
    config = copy.deepcopy(model_config)
    if arch in TRANSFORMERS:
        if model_config.get("attention_heads"):
            raise UsageError(f"--distill-into {spec!r}: this teacher had attention heads pruned; distill from its "
                             "unpruned parent (the student's own width is set by the spec).")
        info = TRANSFORMERS[arch]
        keys, inner = info["keys"], config[info["sub"]]
        sizes = dict(sizes)
        if "vocab" in sizes:
            _trim_config(config, inner, sizes.pop("vocab"), spec)
        unknown = sorted(set(sizes) - set(keys))
        if unknown:
            accepted = list(keys) + (["vocab"] if arch == "EncoderClassifier" else [])
            raise UsageError(f"--distill-into {spec!r}: key {unknown[0]!r} does not size the {arch} model; "
                             f"accepted keys: {', '.join(accepted)}.")
        old_hidden, old_heads = inner[keys["hidden"]], inner[keys["heads"]]
        for key, value in sizes.items():
            inner[keys[key]] = value
        if "hidden" in sizes:
            if "heads" not in sizes:  # keep the teacher's head width
                inner[keys["heads"]] = max(1, sizes["hidden"] // max(1, old_hidden // old_heads))
            if "intermediate" not in sizes and inner.get(keys["intermediate"]) is not None:
                inner[keys["intermediate"]] = max(1, round(inner[keys["intermediate"]] * sizes["hidden"] / old_hidden))
        hidden, heads = inner[keys["hidden"]], inner[keys["heads"]]
        if hidden % heads:
            raise UsageError(f"--distill-into {spec!r}: hidden={hidden} is not a multiple of heads={heads}; "
                             "give a hidden size that the head count divides (or name heads=).")
        return config
    known = sorted(k for k, v in model_config.items()
                   if isinstance(v, int) and not isinstance(v, bool) and k not in _NOT_SIZES)
    unknown = sorted(set(sizes) - set(known))
    if unknown:
        raise UsageError(f"--distill-into {spec!r}: key {unknown[0]!r} does not size the {arch} model; "
                         f"accepted keys: {', '.join(known) or 'none (this model has no integer sizes)'}.")
    config.update(sizes)
    return config


def _trim_config(config: dict[str, Any], encoder: dict[str, Any], vocab: int, spec: str) -> None:
    """An encoder student with `vocab` rows in its word table; the tokenizer's ids reach them through `token_map`."""
    if config.get("arch") != "EncoderClassifier":
        raise UsageError(f"--distill-into {spec!r}: vocab= trims the input vocabulary of an encoder classifier; "
                         f"a {config.get('arch')} predicts over its vocabulary, so it is not accepted here.")
    if config.get("token_map_size"):
        raise UsageError(f"--distill-into {spec!r}: this teacher's vocabulary is already trimmed; distill from its "
                         "untrimmed parent.")
    full = int(encoder["vocab_size"])
    if not 8 <= vocab < full:
        raise UsageError(f"--distill-into {spec!r}: vocab={vocab} is not accepted; give a number of tokens from 8 "
                         f"to {full - 1} (the teacher has {full}).")
    encoder["vocab_size"], config["token_map_size"] = vocab, full


def kept_tokens(counts: torch.Tensor, vocab: int, special: list[int]) -> torch.Tensor:
    """The `vocab` token ids a trimmed student keeps, sorted: the tokenizer's special tokens, then the most frequent
    in the training data (ties to the lower id), as task-specific vocabulary pruning does (TextPruner, Yang et al.
    2022)."""
    special = sorted(set(i for i in special if 0 <= i < len(counts)))[:vocab]
    taken = set(special)
    order = torch.argsort(-counts, stable=True)  # most frequent first, ties in id order
    rest = [i for i in order.tolist() if i not in taken][: vocab - len(special)]
    return torch.tensor(sorted(special + rest), dtype=torch.long)


def token_counts(dataset, size: int) -> torch.Tensor:
    """How often each token id occurs in a tokenized dataset's examples."""
    counts = torch.zeros(size, dtype=torch.long)
    for i in range(len(dataset)):
        ids = torch.as_tensor(dataset[i]["input_ids"], dtype=torch.long)
        counts += torch.bincount(ids[ids < size], minlength=size)
    return counts


def set_token_map(student: nn.Module, kept: torch.Tensor, unk: int) -> None:
    """token_map[id] = the row of `id` in the trimmed table, or the row of [UNK] for an id that was not kept."""
    rows = {int(t): r for r, t in enumerate(kept.tolist())}
    if unk not in rows:
        raise UsageError("the trimmed vocabulary must keep the tokenizer's [UNK] token; the tokenizer names none.")
    student.token_map.fill_(rows[unk])
    student.token_map[kept] = torch.arange(len(kept))


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher block that student block j stands for: every k-th, ending on the last (6 -> 2 gives [2, 5])."""
    if student_layers <= teacher_layers:
        return [(j + 1) * teacher_layers // student_layers - 1 for j in range(student_layers)]
    return [j * teacher_layers // student_layers for j in range(student_layers)]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied tables are counted once


def layer_blocks(model: nn.Module, arch: str) -> nn.ModuleList | None:
    if arch == "EncoderClassifier":
        return model.encoder.encoder.layer
    if arch == "CausalLM":
        return model.model.transformer.h
    return None


def block_sizes(model: nn.Module, arch: str) -> tuple[int, int]:
    """(hidden width, attention heads) of a transformer model."""
    if arch == "EncoderClassifier":
        c = model.encoder.config
        return c.hidden_size, c.num_attention_heads
    c = model.model.config
    return c.n_embd, c.n_head


@torch.no_grad()
def teacher_importance(teacher: nn.Module, arch: str, task: Task | None = None, batches: list[dict] | None = None) -> dict:
    """How much each residual channel, attention channel and MLP neuron of the teacher carries (Minitron, Muralidharan
    et al. 2024): with `batches`, the mean |activation| over real tokens (channels: summed over every LayerNorm
    output; attention / MLP: the input of the block's output projection, times that projection's column norm);
    without, from the weights alone (LayerNorm |gain|, column norms, and ||w_in|| * ||w_out|| for neurons)."""
    info = TRANSFORMERS[arch]
    width, _ = block_sizes(teacher, arch)
    blocks = layer_blocks(teacher, arch)
    norms = [m for m in teacher.modules() if isinstance(m, nn.LayerNorm) and tuple(m.normalized_shape) == (width,)]
    state = teacher.state_dict()
    prefix = info["blocks"]

    def column_norm(j: int, key: str, role: str) -> torch.Tensor:
        name = f"{info[key]}.weight"
        w = state[f"{prefix}{j}.{name}"]
        dim = info["block_roles"][name].index(role)
        return w.float().movedim(dim, 0).flatten(1).norm(dim=1)

    att = [column_norm(j, "att_out", "att") for j in range(len(blocks))]
    mlp = [column_norm(j, "mlp_out", "mlp") for j in range(len(blocks))]
    if not batches:
        ch = sum(m.weight.detach().abs().float() for m in norms) if norms else torch.ones(width)
        mlp = [mlp[j] * column_norm(j, "mlp_in", "mlp") for j in range(len(blocks))]
        return {"ch": ch, "att": att, "mlp": mlp}
    sums: dict[Any, torch.Tensor] = {}
    mask: list[torch.Tensor] = []

    def record(key):
        def hook(module, args, output):
            x = (args[0] if key[0] != "ch" else output).float()
            m = mask[0].reshape(-1).bool()
            value = x.reshape(-1, x.shape[-1])[m].abs().sum(0)
            sums[key] = sums.get(key, 0) + value
        return hook

    handles = [m.register_forward_hook(record(("ch", i))) for i, m in enumerate(norms)]
    for j, block in enumerate(blocks):
        handles.append(block.get_submodule(info["att_out"]).register_forward_hook(record(("att", j))))
        handles.append(block.get_submodule(info["mlp_out"]).register_forward_hook(record(("mlp", j))))
    tokens = 0
    try:
        for batch in batches:
            ids = batch["input_ids"]
            mask[:] = [batch.get("attention_mask", torch.ones_like(ids))]
            tokens += int(mask[0].sum())
            task.forward(teacher, batch)
    finally:
        for h in handles:
            h.remove()
    ch = sum(v for k, v in sums.items() if k[0] == "ch") / max(1, tokens)
    return {"ch": ch, "att": [att[j] * sums[("att", j)] / max(1, tokens) for j in range(len(blocks))],
            "mlp": [mlp[j] * sums[("mlp", j)] / max(1, tokens) for j in range(len(blocks))]}


def _top(score: torch.Tensor, k: int) -> torch.Tensor:
    return score.argsort(descending=True)[:k].sort().values


@torch.no_grad()
def init_from_teacher(student: nn.Module, teacher: nn.Module, arch: str | None, mapping: list[int],
                      task: Task | None = None, batches: list[dict] | None = None,
                      vocab: torch.Tensor | None = None) -> dict[str, int]:
    """Copy what fits from the teacher into the student in place; returns how many tensors were copied, how.

    Student block j starts as teacher block m(j). A narrower transformer keeps, consistently in every tensor, the
    teacher's most important residual channels, heads (or attention channels when the head width changes) and MLP
    neurons (`teacher_importance`): width pruning as the initialisation of the distilled student. A trimmed
    vocabulary keeps the teacher's rows of the `vocab` token ids."""
    info = TRANSFORMERS.get(arch or "")
    t_state, s_state = teacher.state_dict(), student.state_dict()
    counts = {"copied": 0, "sliced": 0, "fresh": 0}
    keep: dict[Any, torch.Tensor] = {} if vocab is None else {"vocab": vocab}
    if info:
        (t_width, t_heads), (s_width, s_heads) = block_sizes(teacher, arch), block_sizes(student, arch)
        score = teacher_importance(teacher, arch, task, batches)
        keep["ch"] = _top(score["ch"], s_width)
        t_dh, s_dh = t_width // t_heads, s_width // s_heads
        for j, m in enumerate(mapping):
            if t_dh == s_dh:  # whole heads
                heads = _top(score["att"][m].reshape(t_heads, t_dh).sum(1), s_heads)
                att = (heads[:, None] * t_dh + torch.arange(t_dh)).flatten()
            else:
                att = _top(score["att"][m], s_width)
            keep[("att", j)] = att
            keep[("att3", j)] = torch.cat([att + i * t_width for i in range(3)])
            keep[("mlp", j)] = score["mlp"][m].argsort(descending=True)
    for name, p in s_state.items():
        tname, j, roles = name, None, None
        if info and name.startswith(info["blocks"]):
            index, rest = name[len(info["blocks"]):].split(".", 1)
            j = int(index)
            tname = f"{info['blocks']}{mapping[j]}.{rest}"
            roles = info["block_roles"].get(rest)
        elif info:
            roles = info["roles"].get(name)
        t = t_state.get(tname)
        if t is None or t.dim() != p.dim():
            counts["fresh"] += 1
            continue
        if not p.is_floating_point():  # integer buffers (position ids)
            if t.shape == p.shape:
                p.copy_(t)
            continue
        if t.shape == p.shape:
            p.copy_(t)
            counts["copied"] += 1
            continue
        for d in range(p.dim()):
            if p.shape[d] == t.shape[d]:
                continue
            role = roles[d] if roles and d < len(roles) else None
            index = keep.get(role if role in ("ch", "vocab") else (role, j))
            if index is None or p.shape[d] > len(index):
                break
            if role == "mlp":
                index = index[: p.shape[d]].sort().values
            t = t.index_select(d, index)
        if t.shape == p.shape:
            p.copy_(t)
            counts["sliced"] += 1
        else:
            counts["fresh"] += 1
    return counts


def build_student(task: Task, teacher: nn.Module, teacher_config: dict, spec: str, seed: int,
                  from_teacher: bool = True, batches: list[dict] | None = None,
                  train=None) -> tuple[nn.Module, dict, list[int], dict[str, int]]:
    """(student, its model config, teacher block of each student block, how its tensors were initialised).

    `batches` (training examples) rank the teacher's channels by their activations for a narrower student's
    initialisation; without them the ranking uses the weights alone. `train` (the tokenized training set) picks
    the tokens a `vocab=N` student keeps."""
    from .config import parse_student_spec

    try:
        sizes = parse_student_spec(spec)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    config = student_config(teacher_config, sizes, spec)
    kept = None
    if config.get("token_map_size"):
        if train is None:
            raise UsageError(f"--distill-into {spec!r}: vocab= picks tokens from the training data, and none was given.")
        kept = kept_tokens(token_counts(train, config["token_map_size"]), config["encoder"]["vocab_size"],
                           list(task.tokenizer.all_special_ids))
        pad, rows = config["encoder"].get("pad_token_id"), kept.tolist()
        if pad is not None:  # the embedding's padding row is the row [PAD] moved to
            config["encoder"]["pad_token_id"] = rows.index(pad) if pad in rows else None
    torch.manual_seed(seed)
    try:
        student = task.build_model(config)
    except (ValueError, RuntimeError) as exc:
        raise UsageError(f"--distill-into {spec!r} does not give a model that can be built ({exc}).") from None
    arch = teacher_config.get("arch")
    mapping = []
    if arch in TRANSFORMERS:
        layers = TRANSFORMERS[arch]["keys"]["layers"]
        sub = TRANSFORMERS[arch]["sub"]
        mapping = layer_map(teacher_config[sub][layers], config[sub][layers])
    t_params, s_params = count_parameters(teacher), count_parameters(student)
    if s_params >= t_params:
        raise UsageError(f"--distill-into {spec!r} gives a student of {s_params:,} parameters, not fewer than the "
                         f"teacher's {t_params:,}; give fewer layers or smaller sizes.")
    if kept is not None:
        set_token_map(student, kept, task.tokenizer.unk_token_id)
    init = init_from_teacher(student, teacher, arch, mapping, task, batches, kept) if from_teacher else {}
    return student, config, mapping, init
