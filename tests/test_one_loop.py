"""The one loop (tamer/loop.py) against a hand-written PyTorch loop, and its hooks."""
import torch
from torch import nn

from tamer.loop import Callback, Loop, Piece


def _data(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    return [{"x": x[i:i + 8], "labels": (x[i:i + 8] @ torch.arange(5.0)).unsqueeze(1)} for i in range(0, n, 8)]


def _mse(model, batch):
    return nn.functional.mse_loss(model(batch["x"]), batch["labels"])


def _model():
    torch.manual_seed(0)
    return nn.Linear(5, 1)


def test_loop_matches_a_hand_written_loop_bit_for_bit():
    data = _data()
    ref = _model()
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):
        for batch in data:
            opt.zero_grad()
            _mse(ref, batch).backward()
            opt.step()
    model = _model()
    state = Loop(model, lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), data, _mse, 3).run()
    assert torch.equal(model.weight, ref.weight) and torch.equal(model.bias, ref.bias)
    assert state.global_step == 18 and state.seen == 3 * 48 and state.epoch == 4


def test_pieces_accumulate_to_the_whole_batch_gradient():
    batch = _data(16)[0]
    whole = _model()
    _mse(whole, batch).backward()
    model = _model()
    halves = [Piece({k: v[:4] for k, v in batch.items()}, weight=0.5, last=False),
              Piece({k: v[4:] for k, v in batch.items()}, weight=0.5)]
    synced = []
    loop = Loop(model, torch.optim.SGD(model.parameters(), lr=0.0), [halves], _mse, 1,
                sync=lambda last: synced.append(last) or torch.enable_grad())
    loop.run()
    assert torch.allclose(model.weight.grad, whole.weight.grad, atol=1e-6) and synced == [False, True]


def test_empty_batches_take_the_empty_step_and_transforms_see_every_piece():
    model = _model()
    empty, seen = [], []
    data = [None, *_data(16), None]
    loop = Loop(model, torch.optim.SGD(model.parameters(), lr=0.01), data, _mse, 2,
                empty_step=lambda: empty.append(1),
                transforms=[lambda b, at: seen.append((at.epoch, at.step)) or {**b, "x": b["x"] * 0}])
    state = loop.run()
    assert len(empty) == 4 and seen == [(1, 1), (1, 2), (2, 1), (2, 2)] and state.global_step == 8
    assert torch.equal(model.weight, _model().weight)  # the transform zeroed the inputs: no gradient on the weight


def test_a_callback_stops_before_an_epoch_and_sees_every_step_and_epoch_end():
    class Budget(Callback):
        steps, ends = 0, []

        def before_epoch(self, loop):
            if loop.state.epoch == 3:
                loop.state.stop = "budget"

        def on_step_end(self, loop):
            Budget.steps += 1

        def on_epoch_end(self, loop):
            Budget.ends.append((loop.state.epoch, loop.state.count))

    model = _model()
    state = Loop(model, torch.optim.SGD(model.parameters(), lr=0.01), _data(), _mse, 5, callbacks=[Budget()]).run()
    assert state.stop == "budget" and Budget.steps == 12 and Budget.ends == [(1, 48.0), (2, 48.0)]


def test_resume_from_a_saved_state_continues_the_same_run():
    data = _data()
    full = _model()
    Loop(full, torch.optim.SGD(full.parameters(), lr=0.05), data, _mse, 2).run()
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)

    class Halt(Callback):
        def on_step_end(self, loop):
            if loop.state.global_step == 9:
                raise KeyboardInterrupt

    first = Loop(model, opt, data, _mse, 2, callbacks=[Halt()])
    try:
        first.run()
    except KeyboardInterrupt:
        pass
    second = Loop(model, opt, data, _mse, 2)
    second.state.restore(first.state.saved())
    second.run()
    assert torch.equal(model.weight, full.weight) and second.state.global_step == 12
