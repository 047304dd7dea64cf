"""Task-balancing strategies: a matrix over the registry (build, finite, tensor-only state, exact resume, errors) and
one test of each method's defining behaviour."""

import inspect
import itertools
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hf_mtl.weighting import (
    WEIGHTINGS,
    CAGradWeighting,
    DWAWeighting,
    FAMOWeighting,
    GradientWeighting,
    GradNormWeighting,
    LossWeighting,
    PCGradWeighting,
    RepresentationNormWeighting,
    StaticWeighting,
    UncertaintyWeighting,
    build_weighting,
)
from hf_mtl.weighting.cagrad import solve_cagrad_dual


TASKS = ["a", "b", "c"]
MATRIX_KWARGS = {"static": {"weights": {"a": 2.0, "b": 0.5}}}


class ToyMultiTask(nn.Module):
    """Shared layer + one linear head per task; task targets on very different scales so weighting matters."""

    def __init__(self, tasks=TASKS):
        super().__init__()
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleDict({task: nn.Linear(8, 1) for task in tasks})

    def forward(self, x, targets):
        hidden = torch.tanh(self.shared(x))
        self.hidden = hidden  # what the heads read: `rep_norm` measures each task's gradient here
        return {task: ((self.heads[task](hidden).squeeze(-1) - y) ** 2).mean() for task, y in targets.items()}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: with other processes on the 2 cores, intra-op threads make each op ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_batch(step, tasks=TASKS):
    generator = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(16, 4, generator=generator)
    scales = {"a": 1.0, "b": 5.0, "c": 0.2}
    targets = {task: scales[task] * (x[:, i] - x[:, i + 1]) for i, task in enumerate(tasks)}
    return x, targets


def train_step(model, strategy, step, tasks=TASKS, lr=0.05):
    """One optimizer step as the trainer does it, with plain SGD (stateless, so the model state is the whole state)."""
    x, targets = toy_batch(step, tasks)
    losses = model(x, targets)
    shared = list(model.shared.parameters())
    if strategy.requires_task_gradients:
        task_gradients, head_gradients = {}, {}
        for task in tasks:
            head = list(model.heads[task].parameters())
            grads = torch.autograd.grad(losses[task], shared + head, retain_graph=True)
            task_gradients[task] = torch.cat([g.reshape(-1) for g in grads[: len(shared)]])
            head_gradients[task] = grads[len(shared) :]
        output = strategy.combine_gradients(task_gradients, {t: loss.detach() for t, loss in losses.items()})
        weights = strategy.weights()
        offset = 0
        for p in shared:
            p.grad = output[offset : offset + p.numel()].view_as(p).clone()
            offset += p.numel()
        for task in tasks:
            for p, g in zip(model.heads[task].parameters(), head_gradients[task]):
                p.grad = weights[task] * g
    elif strategy.needs_representation:
        output = strategy.combine(losses, representation=model.hidden)
        output.backward()
    else:
        output = strategy.combine(losses)
        output.backward()
    with torch.no_grad():
        for p in list(model.parameters()) + list(strategy.parameters()):
            if p.grad is not None:
                p -= lr * p.grad
                p.grad = None
    strategy.on_step_end({task: loss.item() for task, loss in losses.items()})
    if step % 3 == 2:
        strategy.on_epoch_end(step // 3)
    return output.detach()


def new_run(name):
    torch.manual_seed(0)
    return ToyMultiTask(), build_weighting(name, TASKS, **MATRIX_KWARGS.get(name, {}))


# ---------------------------------------------------------------- registry matrix


def test_every_method_is_registered():
    assert WEIGHTINGS.choices() == ["cagrad", "dwa", "famo", "gradnorm", "gradnorm_rep", "pcgrad", "rep_norm", "static",
                                    "uncertainty"]


@pytest.mark.parametrize("name", WEIGHTINGS.choices())
def test_matrix_builds_runs_finite_and_state_is_tensors(name):
    model, strategy = new_run(name)
    cls = WEIGHTINGS.get(name)
    assert isinstance(strategy, cls) and cls.name == name
    assert isinstance(strategy, (LossWeighting, GradientWeighting))
    assert strategy.requires_task_gradients == isinstance(strategy, GradientWeighting)
    if name != "static":
        assert "arxiv.org" in cls.__doc__, "the docstring cites the paper"
    for step in range(6):
        output = train_step(model, strategy, step)
        assert torch.isfinite(output).all()
    weights = strategy.weights()
    assert list(weights) == TASKS and all(math.isfinite(w) and w >= 0 for w in weights.values())
    state = strategy.state_dict()
    assert all(isinstance(value, torch.Tensor) for value in state.values()), state


@pytest.mark.parametrize("name", WEIGHTINGS.choices())
def test_matrix_resume_mid_run_is_exact(name, tmp_path):
    model, strategy = new_run(name)
    reference = [train_step(model, strategy, step) for step in range(10)]
    reference_weights = strategy.weights()

    model, strategy = new_run(name)
    for step in range(5):
        train_step(model, strategy, step)
    save_file(strategy.state_dict(), tmp_path / "weighting.safetensors")
    model_state = {k: v.clone() for k, v in model.state_dict().items()}
    # Keep going on the original objects while the resumed copy catches up: both must match the reference.
    resumed_model, resumed = new_run(name)
    resumed_model.load_state_dict(model_state)
    resumed.load_state_dict(load_file(tmp_path / "weighting.safetensors"), strict=True)
    for step in range(5, 10):
        continued = train_step(model, strategy, step)
        after_resume = train_step(resumed_model, resumed, step)
        assert torch.equal(continued, reference[step])
        assert torch.equal(after_resume, reference[step]), f"step {step} differs after resume"
    assert resumed.weights() == strategy.weights() == reference_weights


@pytest.mark.parametrize("name", WEIGHTINGS.choices())
def test_matrix_step_with_a_subset_of_tasks(name):
    model, strategy = new_run(name)
    train_step(model, strategy, 0)
    for step in range(1, 4):
        output = train_step(model, strategy, step, tasks=["a", "c"])
        assert torch.isfinite(output).all()
    assert list(strategy.weights()) == TASKS
    assert torch.isfinite(train_step(model, strategy, 4)).all()


@pytest.mark.parametrize("name", WEIGHTINGS.choices())
def test_matrix_unknown_task_is_an_error(name):
    _, strategy = new_run(name)
    losses = {"a": torch.tensor(1.0), "typo": torch.tensor(1.0)}
    with pytest.raises(ValueError, match=r"unknown task\(s\) \['typo'\]; known: \['a', 'b', 'c'\]"):
        if isinstance(strategy, GradientWeighting):
            strategy.combine_gradients({k: torch.ones(3) for k in losses}, losses)
        else:
            strategy.combine(losses)
    with pytest.raises(ValueError, match="typo"):
        strategy.on_step_end({"typo": 1.0})


@pytest.mark.parametrize("name", WEIGHTINGS.choices())
def test_matrix_unknown_hyperparameter_lists_accepted_ones(name):
    accepted = [
        p for p in inspect.signature(WEIGHTINGS.get(name).__init__).parameters if p not in ("self", "task_names")
    ]
    assert accepted or name == "uncertainty"
    with pytest.raises(
        ValueError, match=rf"Unknown argument\(s\) \['bogus'\] for weighting '{name}'. It accepts:"
    ) as info:
        build_weighting(name, TASKS, bogus=1)
    assert all(argument in str(info.value) for argument in accepted)


def test_unknown_strategy_lists_choices():
    with pytest.raises(
        ValueError,
        match=r"Unknown weighting 'pcgrd'. Choose one of: cagrad, dwa, famo, gradnorm, gradnorm_rep, pcgrad, rep_norm, static, uncertainty. "
        r"Did you mean 'pcgrad'",
    ):
        build_weighting("pcgrd", TASKS)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("dwa", {"T": 0}, r"`T` must be > 0.0, got 0. Use a positive temperature"),
        ("dwa", {"T": -2.0}, r"`T` must be > 0.0, got -2.0"),
        ("dwa", {"T": float("nan")}, r"`T` must be a finite number, got nan"),
        ("cagrad", {"c": -0.1}, r"`c` must be >= 0.0, got -0.1"),
        ("cagrad", {"rescale": "yes"}, r"`rescale` must be True or False, got 'yes'"),
        ("gradnorm", {"alpha": -1}, r"`alpha` must be >= 0.0, got -1"),
        ("gradnorm", {"lr": 0.0}, r"`lr` must be > 0.0, got 0.0"),
        ("famo", {"lr": -0.1}, r"`lr` must be > 0.0, got -0.1"),
        ("famo", {"gamma": -1e-3}, r"`gamma` must be >= 0.0, got -0.001"),
        ("famo", {"min_losses": {"zzz": 0.0}}, r"unknown task\(s\) \['zzz'\]"),
        ("famo", {"min_losses": {"a": float("inf")}}, r"`min_losses\['a'\]` must be a finite number"),
        ("pcgrad", {"seed": -1}, r"`seed` must be an integer >= 0, got -1"),
        ("pcgrad", {"seed": 1.5}, r"`seed` must be an integer >= 0, got 1.5"),
        ("static", {"weights": {"a": -1.0}}, r"weight of task 'a' must be a finite number >= 0, got -1.0"),
        ("static", {"weights": {"b": float("inf")}}, r"weight of task 'b' must be a finite number >= 0, got inf"),
        ("static", {"weights": {"zzz": 1.0}}, r"`weights` names unknown task\(s\) \['zzz'\]"),
        ("static", {"weights": [1.0, 2.0]}, r"`weights` must be a dict"),
    ],
)
def test_bad_hyperparameters_name_the_value(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_weighting(name, TASKS, **kwargs)


def test_no_tasks_and_non_scalar_losses_are_errors():
    with pytest.raises(ValueError, match="needs at least one task"):
        build_weighting("dwa", [])
    strategy = build_weighting("uncertainty", TASKS)
    with pytest.raises(ValueError, match=r"loss of task 'a' must be a scalar tensor, got \(4,\)"):
        strategy.combine({"a": torch.ones(4)})
    with pytest.raises(ValueError, match="got no task losses"):
        strategy.combine({})


# ---------------------------------------------------------------- defining behaviour, one test per method


def test_static_is_exactly_the_weighted_sum():
    strategy = StaticWeighting(TASKS, weights={"a": 2.0, "c": 0.0})
    assert strategy.weights() == {"a": 2.0, "b": 1.0, "c": 0.0}  # a task left out keeps weight 1
    losses = {task: torch.rand((), requires_grad=True) for task in TASKS}
    total = strategy(losses)  # `forward` is `combine`
    assert torch.allclose(total, 2.0 * losses["a"] + losses["b"], rtol=0, atol=1e-7)
    grads = torch.autograd.grad(total, [losses[t] for t in TASKS])
    assert [g.item() for g in grads] == [2.0, 1.0, 0.0]
    assert strategy.state_dict() == {}  # weights are configuration, not resumable state


def test_rep_norm_equalises_every_tasks_gradient_at_the_representation_and_leaves_the_heads_alone():
    torch.manual_seed(0)
    model, strategy = ToyMultiTask(), build_weighting("rep_norm", TASKS, mode="equal")
    x, targets = toy_batch(0)
    losses = model(x, targets)
    raw = {t: torch.autograd.grad(loss, model.hidden, retain_graph=True)[0] for t, loss in losses.items()}
    norms = {t: g.norm() for t, g in raw.items()}
    assert max(norms.values()) > 5 * min(norms.values()), "the toy's targets differ in scale: so do the raw gradients"
    heads = {t: torch.autograd.grad(loss, list(model.heads[t].parameters()), retain_graph=True) for t, loss in losses.items()}
    total = strategy.combine(losses, representation=model.hidden)
    assert torch.allclose(total, sum(losses.values())), "the value is the plain sum of the losses"
    (at_hidden,) = torch.autograd.grad(total, model.hidden, retain_graph=True)
    total.backward()
    weights = strategy.weights()
    scaled = [float(weights[t] * norms[t]) for t in TASKS]
    assert max(scaled) == pytest.approx(min(scaled), rel=1e-5)
    assert sum(scaled) / len(scaled) == pytest.approx(float(sum(norms.values()) / len(norms)), rel=1e-5)
    assert weights["b"] < 1 < weights["c"], "the large-scale task is damped, the small-scale one boosted"
    expected = sum(weights[t] * raw[t] for t in TASKS)
    assert torch.allclose(at_hidden, expected, rtol=1e-4, atol=1e-6), "the encoder receives the rescaled sum"
    for t in TASKS:  # each head keeps its own unscaled gradient
        for p, g in zip(model.heads[t].parameters(), heads[t]):
            assert torch.allclose(p.grad, g, atol=1e-6)


def test_rep_norm_cap_damps_only_the_tasks_above_the_median():
    model, strategy = new_run("rep_norm")
    x, targets = toy_batch(0)
    losses = model(x, targets)
    norms = {t: torch.autograd.grad(loss, model.hidden, retain_graph=True)[0].norm() for t, loss in losses.items()}
    strategy.combine(losses, representation=model.hidden)
    weights = strategy.weights()
    median = sorted(norms.values())[1]
    for t in TASKS:
        assert float(weights[t] * norms[t]) == pytest.approx(float(min(norms[t], median)), rel=1e-5)
    assert weights["b"] < 1 and weights["a"] == weights["c"] == 1.0
    with pytest.raises(ValueError, match="`mode` must be one of cap, equal, got 'max'"):
        build_weighting("rep_norm", TASKS, mode="max")


def test_rep_norm_with_one_task_is_static_and_refuses_a_missing_representation():
    model, strategy = new_run("rep_norm")
    x, targets = toy_batch(0, ["b"])
    losses = model(x, targets)
    assert torch.equal(strategy.combine(losses, representation=model.hidden), losses["b"])
    assert strategy.weights()["b"] == 1.0
    with pytest.raises(ValueError, match="head_inputs"):
        strategy.combine(losses)
    assert isinstance(strategy, RepresentationNormWeighting) and strategy.state_dict() == {}


def test_gradnorm_rep_applies_gradnorms_rule_to_the_norms_at_the_representation_in_one_backward_pass():
    """The same weights as `gradnorm` fed with each task's gradient norm at the representation; the loss is
    sum_i w_i L_i; measuring the norms runs no backward pass through the shared layer."""
    torch.manual_seed(0)
    model, strategy = ToyMultiTask(), build_weighting("gradnorm_rep", TASKS)
    reference = build_weighting("gradnorm", TASKS)
    for step in range(4):
        x, targets = toy_batch(step)
        x.requires_grad_(True)
        reached = []
        x.register_hook(lambda g: reached.append(1))  # a backward pass through the shared layer reaches x
        losses = model(x, targets)
        norms = {t: torch.autograd.grad(loss, model.hidden, retain_graph=True)[0].norm() for t, loss in losses.items()}
        weights = strategy.weights()
        total = strategy.combine(losses, representation=model.hidden)
        assert not reached, "the norms are measured through the heads only"
        assert torch.allclose(total, sum(weights[t] * losses[t] for t in TASKS))
        total.backward()
        assert len(reached) == 1
        # gradnorm on gradients with those norms (direction irrelevant to its rule) moves its weights identically
        reference.combine_gradients({t: torch.stack([norms[t], torch.zeros(())]) for t in TASKS},
                                    {t: loss.detach() for t, loss in losses.items()})
        for module in (strategy, reference):
            module.on_step_end({t: float(loss) for t, loss in losses.items()})
        assert strategy.weights() == pytest.approx(reference.weights(), rel=1e-5)
        model.zero_grad()
    assert strategy.weights() != pytest.approx(dict.fromkeys(TASKS, 1.0)), "the weights moved"
    assert sum(strategy.weights().values()) == pytest.approx(len(TASKS))
    with pytest.raises(ValueError, match="head_inputs"):
        strategy.combine(model(*toy_batch(0)))


def _rep_norm_rank(rank, port, results):
    import datetime

    import torch.distributed as dist

    # A process left alone in the all-reduce fails after 30 s instead of hanging the test run.
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=30))
    try:
        torch.manual_seed(0)
        model, strategy = ToyMultiTask(), build_weighting("rep_norm", TASKS)
        if rank == 0:
            x, targets = toy_batch(0)
            strategy.combine(model(x, targets), representation=model.hidden)
        else:  # every task of this process's micro-batch was non-finite
            strategy.skip_micro_batch()
        results[rank] = strategy.weights()
    finally:
        dist.destroy_process_group()


def test_rep_norm_a_process_without_finite_losses_still_joins_the_all_reduce():
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    results = mp.Manager().dict()
    mp.spawn(_rep_norm_rank, args=(port, results), nprocs=2, join=True)
    assert set(results.keys()) == {0, 1}, "neither process hangs"
    assert results[0]["b"] < 1, "rank 0 weighs its tasks with the norms it measured"


def test_uncertainty_learns_inverse_noise_variances():
    """Two regression tasks with noise σ=1 and σ=3: exp(-s_i) must approach 1/σ_i², so their ratio approaches 9."""
    generator = torch.Generator().manual_seed(0)
    true_weights = torch.randn(2, 5, generator=generator)
    sigma = torch.tensor([1.0, 3.0])
    model = nn.Linear(5, 2)
    strategy = UncertaintyWeighting(["low_noise", "high_noise"])
    optimizer = torch.optim.Adam(
        [{"params": model.parameters(), "lr": 0.05}, {"params": strategy.parameters(), "lr": strategy.default_lr}]
    )
    for _ in range(500):
        x = torch.randn(256, 5, generator=generator)
        y = x @ true_weights.T + sigma * torch.randn(256, 2, generator=generator)
        errors = ((model(x) - y) ** 2).mean(0)
        loss = strategy({"low_noise": errors[0], "high_noise": errors[1]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    weights = strategy.weights()
    ratio = weights["low_noise"] / weights["high_noise"]
    assert ratio == pytest.approx(9.0, rel=0.1), weights
    assert weights["low_noise"] == pytest.approx(1.0, rel=0.1)
    assert 1e-3 < UncertaintyWeighting.default_lr <= 0.1


def test_dwa_slow_task_gets_more_weight_from_epoch_two():
    strategy = DWAWeighting(TASKS, T=2.0)
    losses_per_epoch = {"a": [1.0, 0.5, 0.2], "b": [1.0, 0.9, 0.8], "c": [2.0, 2.0, 2.0]}
    for epoch in range(2):
        for _ in range(4):  # constant within an epoch, so the epoch averages are the values above
            strategy.on_step_end({task: values[epoch] for task, values in losses_per_epoch.items()})
        assert strategy.weights() == dict.fromkeys(TASKS, 1.0), "epochs 0 and 1 use weight 1"
        strategy.on_epoch_end(epoch)
    weights = strategy.weights()
    assert weights["c"] > weights["b"] > weights["a"]  # the slower a loss falls, the larger its weight
    assert sum(weights.values()) == pytest.approx(3.0)
    ratios = torch.tensor([0.5, 0.9, 1.0])
    expected = 3 * torch.softmax(ratios / 2.0, 0)
    assert torch.allclose(torch.tensor(list(weights.values())), expected, atol=1e-6)
    losses = {task: torch.tensor(1.5) for task in TASKS}
    assert strategy.combine(losses).item() == pytest.approx(1.5 * 3.0)


def test_famo_raises_the_weight_of_the_slowest_task_without_extra_passes():
    # Interface: a loss-level method (one backward, no per-task gradients) whose update only sees logged floats.
    assert issubclass(FAMOWeighting, LossWeighting) and not FAMOWeighting.requires_task_gradients
    assert FAMOWeighting.needs_all_tasks_per_step
    assert list(inspect.signature(FAMOWeighting.on_step_end).parameters) == ["self", "task_losses"]

    strategy = FAMOWeighting(["fast", "slow"], update="next_step")
    history = []
    for t in range(60):
        losses = {"fast": torch.tensor(0.95**t, requires_grad=True), "slow": torch.tensor(0.995**t, requires_grad=True)}
        total = strategy.combine(losses)
        # ∂loss/∂L_i = z_i / (c D_i) with c = Σ z_j / D_j: the effective task weights form a convex combination.
        grads = torch.autograd.grad(total, [losses["fast"], losses["slow"]])
        assert sum(g.item() for g in grads) == pytest.approx(1.0, rel=1e-5) and min(grads) > 0
        with torch.no_grad():
            strategy.on_step_end({task: loss.item() for task, loss in losses.items()})
        history.append(strategy.weights()["slow"])
    assert history[0] == 1.0  # the first step only records the losses the next step is compared with
    assert history[-1] > history[1] > 1.0 > strategy.weights()["fast"]
    assert all(later >= earlier - 1e-6 for earlier, later in itertools.pairwise(history))

    # The ξ update is the official one: autograd of softmax with grad_outputs=δ, then Adam(lr, weight_decay=γ).
    famo = FAMOWeighting(["x", "y", "z"], update="next_step")
    logits = torch.zeros(3, requires_grad=True)
    adam = torch.optim.Adam([logits], lr=0.025, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(0)
    previous = torch.rand(3, generator=generator) + 0.5
    famo.on_step_end(dict(zip("xyz", previous.tolist())))
    for _ in range(8):
        current = previous * (0.8 + 0.3 * torch.rand(3, generator=generator))
        famo.on_step_end(dict(zip("xyz", current.tolist())))
        delta = (previous + 1e-8).log() - (current + 1e-8).log()
        adam.zero_grad()
        logits.grad = torch.autograd.grad(torch.softmax(logits, 0), logits, grad_outputs=delta)[0]
        adam.step()
        previous = current
    assert torch.allclose(famo.logits, logits.detach(), atol=1e-6)


def test_famo_counts_one_forward_and_one_backward_per_step():
    model, strategy = ToyMultiTask(), FAMOWeighting(TASKS, update="next_step")
    calls = {"forward": 0, "backward": 0}
    model.register_forward_hook(lambda *args: calls.__setitem__("forward", calls["forward"] + 1))
    model.shared.weight.register_hook(lambda grad: calls.__setitem__("backward", calls["backward"] + 1))
    for step in range(7):
        train_step(model, strategy, step)
    assert calls == {"forward": 7, "backward": 7}
    assert strategy.weights() != dict.fromkeys(TASKS, 1.0)  # and it did adapt


def test_famo_same_batch_update_moves_on_the_losses_before_and_after_the_step():
    """The paper's update: δ compares one batch's losses before and after the step, not two steps' losses."""
    famo = FAMOWeighting(["fast", "slow"])  # the default
    assert famo.reevaluates_step and not FAMOWeighting(["fast", "slow"], update="next_step").reevaluates_step
    famo.on_step_end({"fast": 1.0, "slow": 1.0})
    famo.on_step_end({"fast": 0.1, "slow": 0.9})  # step-to-step changes are not its signal
    assert famo.weights() == {"fast": 1.0, "slow": 1.0}
    for _ in range(5):
        famo.on_step_reevaluated({"fast": 1.0, "slow": 1.0}, {"fast": 0.8, "slow": 0.99})
    assert famo.weights()["slow"] > 1.0 > famo.weights()["fast"]
    # The same δ through the next-step update gives the same ξ (one formula, two places to measure it).
    other = FAMOWeighting(["fast", "slow"], update="next_step")
    for _ in range(5):
        other.on_step_end({"fast": 1.0, "slow": 1.0})
        other.on_step_end({"fast": 0.8, "slow": 0.99})
        other.prev_seen.zero_()  # compare only before -> after pairs
    assert other.weights() == pytest.approx(famo.weights())
    with pytest.raises(ValueError, match="famo: unknown update 'paper'; choose one of same_batch, next_step"):
        FAMOWeighting(["a"], update="paper")


def test_gradnorm_boosts_the_task_with_the_smaller_gradient_and_keeps_sum_k():
    strategy = GradNormWeighting(["big", "small"])
    gradients = {"big": torch.tensor([10.0, 0.0, 0.0]), "small": torch.tensor([0.0, 1.0, 0.0])}
    losses = {"big": torch.tensor(1.0), "small": torch.tensor(1.0)}  # same training rate
    history = []
    for _ in range(30):
        before = strategy.weights()
        combined = strategy.combine_gradients(gradients, losses)
        expected = before["big"] * gradients["big"] + before["small"] * gradients["small"]
        assert torch.allclose(combined, expected)
        assert strategy.weights() == before, "weights move once per optimizer step, in on_step_end"
        strategy.on_step_end({k: v.item() for k, v in losses.items()})
        history.append(strategy.weights())
        assert sum(history[-1].values()) == pytest.approx(2.0, abs=1e-5)
    small = [w["small"] for w in history]
    assert all(later > earlier for earlier, later in itertools.pairwise(small))
    assert history[-1]["small"] > 1.5 and history[-1]["big"] < 0.5


def test_gradnorm_boosts_the_task_that_trains_slower():
    strategy = GradNormWeighting(["quick", "slow"], alpha=1.5)
    gradients = {"quick": torch.tensor([1.0, 0.0]), "slow": torch.tensor([0.0, 1.0])}  # equal norms
    for t in range(20):
        losses = {"quick": torch.tensor(0.9**t), "slow": torch.tensor(0.99**t)}
        strategy.combine_gradients(gradients, losses)
        strategy.on_step_end({k: v.item() for k, v in losses.items()})
    weights = strategy.weights()
    assert weights["slow"] > 1.0 > weights["quick"]
    assert sum(weights.values()) == pytest.approx(2.0, abs=1e-5)


def test_pcgrad_projects_conflicts_away_and_passes_agreement_through():
    strategy = PCGradWeighting(["a", "b"])
    generator = torch.Generator().manual_seed(0)
    g1 = torch.randn(50, generator=generator)
    g2 = -0.3 * g1 + 0.5 * torch.randn(50, generator=generator)
    assert torch.dot(g1, g2) < 0 and torch.dot(g1 + g2, g2) < 0  # plain sum works against task b
    out = strategy.combine_gradients({"a": g1, "b": g2}, {})
    p1 = g1 - torch.dot(g1, g2) / torch.dot(g2, g2) * g2
    p2 = g2 - torch.dot(g2, g1) / torch.dot(g1, g1) * g1
    assert torch.allclose(out, p1 + p2, atol=1e-5)
    assert abs(torch.dot(p1, g2)) < 1e-4 and abs(torch.dot(p2, g1)) < 1e-4  # each projected onto the other's normal
    assert torch.dot(out, g1) >= 0 and torch.dot(out, g2) >= 0  # the update no longer conflicts with either task
    assert strategy.weights() == {"a": 1.0, "b": 1.0}

    agreeing = {
        "a": torch.tensor([1.0, 0.2, 0.0]),
        "b": torch.tensor([0.5, 1.0, 0.0]),
        "c": torch.tensor([0.0, 0.0, 1.0]),
    }
    out = PCGradWeighting(TASKS).combine_gradients(agreeing, {})
    assert torch.equal(out, agreeing["a"] + agreeing["b"] + agreeing["c"])

    # Three mutually conflicting gradients: the order matters, and it comes from the seeded generator.
    conflicting = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([-0.5, 0.9]), "c": torch.tensor([-0.5, -0.9])}
    outputs = {
        seed: [PCGradWeighting(TASKS, seed=seed).combine_gradients(conflicting, {}) for _ in range(2)]
        for seed in range(6)
    }
    assert all(torch.equal(*outputs[seed]) for seed in outputs)  # same seed, same first draws
    assert len({tuple(out[0].tolist()) for out in outputs.values()}) > 1
    strategy = PCGradWeighting(TASKS, seed=0)
    draws = {tuple(strategy.combine_gradients(conflicting, {}).tolist()) for _ in range(12)}
    assert len(draws) > 1, "each step draws new orders"


def test_pcgrad_on_the_gram_matrix_equals_the_papers_sequential_projections():
    """The surgery runs on dot products only; the paper's vector-by-vector projections (same random orders) agree."""
    names = ["t0", "t1", "t2", "t3", "t4"]
    generator = torch.Generator().manual_seed(3)
    base = torch.randn(200, generator=generator)
    gradients = {name: (-1) ** i * 0.4 * base + torch.randn(200, generator=generator) for i, name in enumerate(names)}
    out = PCGradWeighting(names, seed=7).combine_gradients(gradients, {})
    orders = torch.Generator().manual_seed(7)
    expected = torch.zeros(200, dtype=torch.float64)
    grads = [gradients[name].double() for name in names]
    projections = 0
    for i, grad in enumerate(grads):
        projected = grad.clone()
        for j in torch.randperm(len(grads), generator=orders).tolist():
            if j != i and torch.dot(projected, grads[j]) < 0:
                projected -= torch.dot(projected, grads[j]) / torch.dot(grads[j], grads[j]) * grads[j]
                projections += 1
        expected += projected
    assert projections >= 5, "the gradients conflict"
    assert torch.allclose(out.double(), expected, rtol=1e-5, atol=1e-5)


def test_cagrad_zero_c_is_the_average_and_conflicts_are_averted():
    generator = torch.Generator().manual_seed(0)
    gradients = {task: torch.randn(20, generator=generator) for task in TASKS}
    out = CAGradWeighting(TASKS, c=0.0).combine_gradients(gradients, {})
    average = sum(gradients.values()) / 3
    assert torch.allclose(out, 3 * average, atol=1e-5)  # the average gradient, at the summed-loss scale (K · g0)

    g1, g2 = torch.tensor([2.0, 0.1]), torch.tensor([-0.5, 0.6])
    g0 = (g1 + g2) / 2
    assert torch.dot(g0, g2) < 0  # averaging fails task 2
    c = 0.4
    out = CAGradWeighting(["a", "b"], c=c).combine_gradients({"a": g1, "b": g2}, {})
    assert torch.dot(out, g1) > 0 and torch.dot(out, g2) > 0
    unscaled = CAGradWeighting(["a", "b"], c=c, rescale=False).combine_gradients({"a": g1, "b": g2}, {})
    assert torch.allclose(unscaled, out * (1 + c**2))
    d = unscaled / 2
    assert torch.norm(d - g0) <= c * torch.norm(g0) * (1 + 1e-5)  # inside the trust ball
    # d maximises the worst task's improvement over the ball: no point of its boundary does better.
    angles = torch.linspace(0, 2 * math.pi, 7200)
    candidates = g0 + c * torch.norm(g0) * torch.stack([angles.cos(), angles.sin()], 1)
    best = (candidates @ torch.stack([g1, g2]).T).min(1).values.max()
    worst_of_d = torch.stack([torch.dot(d, g1), torch.dot(d, g2)]).min()
    assert worst_of_d >= best - 1e-4


def test_cagrad_hands_a_non_finite_gradient_to_the_trainers_non_finite_handling():
    gradients = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([float("nan"), 1.0])}
    out = CAGradWeighting(["a", "b"]).combine_gradients(gradients, {})  # no solver error on a NaN Gram matrix
    assert not torch.isfinite(out).all()  # the trainer's gradient check then errors (naming the step) or skips it


def test_cagrad_dual_solution_is_optimal_in_higher_dimension():
    generator = torch.Generator().manual_seed(1)
    grads = torch.randn(4, 3, generator=generator) + torch.tensor([0.5, 0.0, 0.0])
    coefficients = solve_cagrad_dual(grads @ grads.T, c=0.6).float()
    d, g0 = coefficients @ grads, grads.mean(0)
    radius = 0.6 * torch.norm(g0)
    assert torch.norm(d - g0) <= radius * (1 + 1e-5)
    directions = torch.randn(20000, 3, generator=generator)
    candidates = g0 + radius * directions / directions.norm(dim=1, keepdim=True)
    best = (candidates @ grads.T).min(1).values.max()
    assert (grads @ d).min() >= best - 1e-3
