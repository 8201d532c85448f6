"""Learning-rate schedules: their rates against PyTorch's closed forms and the reference,
the same bits in every kernel form and in mixed blocks, the fields they own, and against
torch.optim.lr_scheduler where PyTorch is installed."""

from dataclasses import replace

import numpy as np
import pytest

from fastbp import reference, schedules
from fastbp.config import OPTIMIZERS, ConfigError, RunConfig
from fastbp.params import init_params
from fastbp.train import family_key, train, train_batch

SMALL = dict(layers=(4, 2, 4), steps=200, log_every=25, lr=0.05)  # compiles in seconds
# One run of each schedule, with values that make each part of it show within 200 steps.
EACH = {
    "constant": {},
    "step": {"step_size": 30, "gamma": 0.5},
    "exponential": {"gamma": 0.99},
    "cosine": {"eta_min": 0.002},
    "warmup": {"warmup_steps": 40},
    "warmup_cosine": {"warmup_steps": 40, "start_factor": 0.1, "eta_min": 0.001},
}


def same_bits(a, b) -> bool:
    return a.losses.tobytes() == b.losses.tobytes() and all(
        Wa.tobytes() == Wb.tobytes() and ba.tobytes() == bb.tobytes()
        for (Wa, ba), (Wb, bb) in zip(a.params, b.params, strict=True)
    )


@pytest.mark.parametrize("schedule", list(EACH))
def test_rates_are_the_closed_forms_the_reference_writes_out(schedule):
    config = RunConfig(lr_schedule=schedule, **{**SMALL, **EACH[schedule]})
    rates = schedules.rates(config, 260)  # past the run's steps, the formula goes on
    by_hand = [reference.learning_rate(config, t) for t in range(1, 261)]
    assert rates.tobytes() == np.array(by_hand).tobytes()  # the same bits


def test_rates_by_hand():
    """A few values worked out from PyTorch's documented formulas."""
    base = dict(lr=0.1, steps=100)
    step = schedules.rates(RunConfig(lr_schedule="step", step_size=10, **base), 21)
    assert step[[0, 9, 10, 19, 20]] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001])
    cosine = schedules.rates(RunConfig(lr_schedule="cosine", eta_min=0.02, **base), 101)
    assert cosine[[0, 50, 100]] == pytest.approx([0.1, 0.06, 0.02])
    warm = schedules.rates(RunConfig(lr_schedule="warmup", warmup_steps=4, **base), 6)
    assert warm == pytest.approx([0.1 / 3, 0.05, 0.2 / 3, 0.25 / 3, 0.1, 0.1])
    both = schedules.rates(RunConfig(lr_schedule="warmup_cosine", warmup_steps=20, **base), 100)
    assert both[0] == pytest.approx(0.1 / 3) and both[20] == 0.1  # the cosine starts at lr
    assert both[60] == pytest.approx(0.05)  # half way through the cosine's 80 updates
    assert schedules.rates(RunConfig(lr_schedule="exponential", gamma=0.5, **base), 4)[
        3] == pytest.approx(0.0125)  # fmt: skip


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_every_schedule_matches_the_reference(optimizer):
    for schedule, fields in EACH.items():
        config = RunConfig(optimizer=optimizer, lr_schedule=schedule, weight_decay=1e-3,
                           **{**SMALL, "lr": 0.01, "steps": 300}, **fields)  # fmt: skip
        fast, ref = train(config, engine="loops"), reference.train(config)
        np.testing.assert_allclose(fast.losses, ref.losses, rtol=1e-9)
        for (W, b), (W_ref, b_ref) in zip(fast.params, ref.params, strict=True):
            np.testing.assert_allclose(W, W_ref, rtol=1e-9, atol=1e-13)
            np.testing.assert_allclose(b, b_ref, rtol=1e-9, atol=1e-13)


@pytest.mark.kernel_forms
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_every_kernel_form_gives_the_loop_kernels_bits(optimizer):
    """The vector form (one run), the registers form (a block mixing every schedule and
    two lengths of cosine), mini-batches and the single-run form: the loop kernel's bits."""
    runs = [RunConfig(optimizer=optimizer, lr_schedule=s, seed=k, **{**SMALL, **EACH[s]})
            for k, s in enumerate(EACH)]  # fmt: skip
    runs.append(replace(runs[3], steps=120))  # a shorter cosine: a trajectory of its own
    loops = [train(c, engine="loops") for c in runs]
    assert same_bits(train(runs[5]), loops[5])
    for fast, slow in zip(train_batch(runs), loops, strict=True):
        assert same_bits(fast, slow)
    others = (
        replace(runs[5], batch_size=3),
        replace(runs[1], layers=(4, 10, 4)),
        replace(runs[2], dtype="float32"),
    )  # float32: the float64 rate rounded once
    for config in others:
        assert same_bits(train(config), train(config, engine="loops"))


def test_a_cosine_run_is_not_the_start_of_a_longer_one():
    """A schedule that depends on the run's length trains each length on its own; the
    others share a trajectory between lengths, as constant rates do."""
    cosine = RunConfig(lr_schedule="cosine", **SMALL)
    assert family_key(cosine) != family_key(replace(cosine, steps=100))
    step = RunConfig(lr_schedule="step", step_size=30, **SMALL)
    assert family_key(step) == family_key(replace(step, steps=100))
    short, long = train_batch([replace(step, steps=100), step])
    assert short.losses[-1] == long.losses[4] and not same_bits(short, long)


def test_schedule_fields_apply_where_they_belong():
    assert RunConfig().lr_schedule == "constant"
    assert RunConfig(gamma=0.5, eta_min=0.1).gamma is None  # they do not apply: None
    step = RunConfig(lr_schedule="step", step_size=100)
    assert (step.gamma, step.eta_min, step.warmup_steps) == (0.1, None, None)
    warm = RunConfig(lr_schedule="warmup_cosine", warmup_steps=10)
    assert warm.start_factor == pytest.approx(1 / 3) and warm.eta_min == 0.0
    # out of the run's id at their defaults: runs of fastbp 0.3 keep their ids
    assert RunConfig(lr_schedule="constant", gamma=0.5).run_id == RunConfig().run_id
    assert step.run_id != RunConfig(lr_schedule="step", step_size=100, gamma=0.5).run_id
    assert RunConfig(lr_schedule="cosine").run_id == RunConfig(lr_schedule="cosine",
                                                               eta_min=0.0).run_id  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"lr_schedule": "step"}, "step_size", "lr_schedule 'step' needs step_size"),
        ({"lr_schedule": "exponential"}, "gamma", "lr_schedule 'exponential' needs gamma"),
        ({"lr_schedule": "warmup"}, "warmup_steps", "needs warmup_steps"),
        ({"lr_schedule": "warmup_cosine", "warmup_steps": 50_000}, "warmup_steps",
         "warmup_steps must be below steps = 50000"),
        ({"lr_schedule": "warmup", "warmup_steps": 5, "start_factor": 0}, "start_factor",
         "start_factor must be a number > 0 and <= 1, got 0"),
        ({"lr_schedule": "step", "step_size": 0}, "step_size", "step_size must be"),
        ({"lr_schedule": "exponential", "gamma": -1}, "gamma", "gamma must be a number > 0"),
        ({"lr_schedule": "linear"}, "lr_schedule", "lr_schedule must be one of 'constant'"),
    ],
)  # fmt: skip
def test_bad_schedules_name_the_field(fields, field, message):
    with pytest.raises(ConfigError, match=message) as error:
        RunConfig(**fields)
    assert error.value.field == field


def test_against_torch_lr_scheduler():
    torch = pytest.importorskip("torch")
    sched = torch.optim.lr_scheduler

    def scheduler(opt, c):
        warm = dict(start_factor=c.start_factor, end_factor=1.0, total_iters=c.warmup_steps)
        return {
            "constant": lambda: sched.LambdaLR(opt, lambda e: 1.0),
            "step": lambda: sched.StepLR(opt, step_size=c.step_size, gamma=c.gamma),
            "exponential": lambda: sched.ExponentialLR(opt, gamma=c.gamma),
            "cosine": lambda: sched.CosineAnnealingLR(opt, T_max=c.steps, eta_min=c.eta_min),
            "warmup": lambda: sched.LinearLR(opt, **warm),
            "warmup_cosine": lambda: sched.SequentialLR(opt, [
                sched.LinearLR(opt, **warm),
                sched.CosineAnnealingLR(opt, T_max=c.steps - c.warmup_steps, eta_min=c.eta_min),
            ], milestones=[c.warmup_steps]),
        }[c.lr_schedule]()  # fmt: skip

    optimizers = {
        "sgd": lambda ps, c: torch.optim.SGD(ps, lr=c.lr),
        "momentum": lambda ps, c: torch.optim.SGD(ps, lr=c.lr, momentum=c.momentum),
        "nesterov": lambda ps, c: torch.optim.SGD(
            ps, lr=c.lr, momentum=c.momentum, nesterov=True
        ),  # fmt: skip
        "adam": lambda ps, c: torch.optim.Adam(ps, lr=c.lr, betas=(c.beta1, c.beta2), eps=c.eps),
    }
    for optimizer, make in optimizers.items():
        for schedule, fields in EACH.items():
            config = RunConfig(optimizer=optimizer, lr_schedule=schedule, lr=0.01, steps=300,
                               **fields)  # fmt: skip
            tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True)
                       for W, b in init_params(config) for a in (W, b)]  # fmt: skip
            opt = make(tensors, config)
            lr_scheduler = scheduler(opt, config)
            X = torch.eye(8, dtype=torch.float64)
            for _ in range(config.steps):
                opt.zero_grad()
                H = torch.relu(X @ tensors[0] + tensors[1])
                torch.mean((H @ tensors[2] + tensors[3] - X) ** 2).backward()
                opt.step()
                lr_scheduler.step()
            rtol = 1e-9 if optimizer == "adam" else 1e-12
            ours = [a for W, b in train(config).params for a in (W, b)]
            for a, t in zip(ours, tensors, strict=True):
                np.testing.assert_allclose(a, t.detach().numpy(), rtol=rtol, atol=1e-14,
                                           err_msg=f"{optimizer}, {schedule}")  # fmt: skip


def test_a_schedule_too_long_for_memory_is_refused_before_training():
    with pytest.raises(ConfigError, match="for its learning rates, more than half") as error:
        RunConfig(lr_schedule="cosine", steps=10**12, log_every=10**11)
    assert error.value.field == "steps"
