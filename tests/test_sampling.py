import pytest
import torch

from hf_mtl.sampling import SAMPLERS, MultiTaskBatchSampler, build_task_sampler, stratified_counts


SIZES = [100, 400, 25]


def test_sampler_probabilities():
    sizes = torch.tensor(SIZES, dtype=torch.float64)
    torch.testing.assert_close(build_task_sampler("proportional", SIZES).probabilities(0, 3), sizes / sizes.sum())
    torch.testing.assert_close(build_task_sampler("uniform", SIZES).probabilities(0, 3), torch.full((3,), 1 / 3, dtype=torch.float64))
    p = build_task_sampler("temperature", SIZES, temperature=2.0).probabilities(0, 3)
    torch.testing.assert_close(p, sizes.sqrt() / sizes.sqrt().sum())
    annealed = build_task_sampler("annealed", SIZES)
    # Stickland & Murray: alpha = 1 - 0.8 (e - 1) / (E - 1) for e = 1..E.
    torch.testing.assert_close(annealed.probabilities(0, 5), sizes / sizes.sum())
    last = sizes**0.2
    torch.testing.assert_close(annealed.probabilities(4, 5), last / last.sum())
    assert annealed.probabilities(2, 5)[2] > annealed.probabilities(0, 5)[2]  # small task gains over epochs


def test_sampler_errors():
    with pytest.raises(ValueError, match=r"Unknown sampling 'temprature'.*Did you mean 'temperature'"):
        build_task_sampler("temprature", SIZES)
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        build_task_sampler("temperature", SIZES, temperature=0)
    with pytest.raises(ValueError, match=r"Unknown argument\(s\) \['tau'\] for sampling 'temperature'"):
        build_task_sampler("temperature", SIZES, tau=2)
    with pytest.raises(ValueError, match="at least one training example"):
        build_task_sampler("uniform", [3, 0])
    assert set(SAMPLERS.choices()) >= {"annealed", "learned", "proportional", "temperature", "uniform", "fixed", "rehearsal"}  # fixed, rehearsal: hf_mtl.adaptation


def _sampler(**kwargs):
    defaults = dict(task_sizes=SIZES, task_sampler=build_task_sampler("temperature", SIZES), batch_size=4, seed=3)
    defaults.update(kwargs)
    return MultiTaskBatchSampler(**defaults)


def _task_of(index):
    offsets = [0, 100, 500, 525]
    return next(t for t in range(3) if offsets[t] <= index < offsets[t + 1])


def test_per_task_batches_hold_one_task_and_cover_an_epoch():
    sampler = _sampler()
    batches = list(sampler)
    assert len(batches) == len(sampler) == sampler.steps_per_epoch == -(-sum(SIZES) // 4)
    for batch in batches:
        assert len(batch) == 4 and len({_task_of(i) for i in batch}) == 1
    assert list(_sampler()) == batches  # deterministic for a seed and epoch
    other_epoch = _sampler()
    other_epoch.set_epoch(1)
    assert list(other_epoch) != batches


def test_processes_train_the_same_task_on_disjoint_rows():
    ranks = [list(_sampler(num_replicas=2, rank=r)) for r in range(2)]
    single = list(_sampler(batch_size=8))
    assert len(ranks[0]) == len(ranks[1]) == len(single)
    for a, b, whole in zip(*ranks, single):
        assert {_task_of(i) for i in a} == {_task_of(i) for i in b}
        assert a + b == whole  # two processes x 4 rows see exactly the rows of one process x 8


def test_accumulated_micro_batches_equal_one_large_batch():
    large = list(_sampler(batch_size=8))
    small = list(_sampler(batch_size=2, gradient_accumulation_steps=4))
    assert len(small) == 4 * len(large)
    for step, batch in enumerate(large):
        assert sum(small[4 * step : 4 * step + 4], []) == batch


def test_mixed_batches_mix_tasks_in_proportion():
    sampler = _sampler(batching="mixed", batch_size=16, task_sampler=build_task_sampler("proportional", SIZES))
    counts = torch.zeros(3)
    mixed = 0
    for batch in sampler:
        tasks = [_task_of(i) for i in batch]
        counts += torch.bincount(torch.tensor(tasks), minlength=3)
        mixed += len(set(tasks)) > 1
        assert set(tasks) == {0, 1, 2}  # stratified: every task appears when there is room
    assert mixed == len(sampler)
    share = counts / counts.sum()
    assert abs(share[1] - 400 / 525) < 0.1


def test_stratified_counts():
    g = torch.Generator().manual_seed(0)
    counts = stratified_counts(torch.tensor([0.7, 0.29, 0.01], dtype=torch.float64), 10, g)
    assert counts.sum() == 10 and counts.min() >= 1
    counts = stratified_counts(torch.tensor([0.5, 0.5], dtype=torch.float64), 1, g)
    assert counts.sum() == 1


def test_bad_layout():
    with pytest.raises(ValueError, match="Unknown batching 'both'"):
        _sampler(batching="both")
    with pytest.raises(ValueError, match="Invalid layout"):
        _sampler(num_replicas=2, rank=2)


def _lengths(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 60, (size,), generator=g).tolist() for size in SIZES]


def _padded_tokens(batches, lengths):
    flat = sum(lengths, [])
    return sum(max(flat[i] for i in batch) * len(batch) for batch in batches if batch)


@pytest.mark.parametrize("batching", ["per_task", "mixed"])
def test_length_grouping_keeps_each_steps_tasks_and_rows_and_cuts_padding(batching):
    lengths = _lengths()
    plain = _sampler(batching=batching, batch_size=8)
    grouped = _sampler(batching=batching, batch_size=8, lengths=lengths)
    plain_steps, grouped_steps = list(plain.step_plan(0)), list(grouped.step_plan(0))
    assert len(plain_steps) == len(grouped_steps) > 50  # more than one window
    for start in range(0, len(plain_steps), 50):  # a window holds the same rows, only their steps change
        window = slice(start, start + 50)
        assert sorted(sum(plain_steps[window], [])) == sorted(sum(grouped_steps[window], []))
    def counts(steps):
        return [torch.bincount(torch.tensor([_task_of(i) for i in s]), minlength=3).tolist() for s in steps]
    assert counts(plain_steps) == counts(grouped_steps)  # every step keeps its tasks and row counts
    assert _padded_tokens(grouped_steps, lengths) < 0.8 * _padded_tokens(plain_steps, lengths)
    assert list(grouped.step_plan(0)) == grouped_steps and list(grouped.step_plan(1)) != grouped_steps
    if batching == "mixed":  # micro-batches of a mixed step still mix tasks
        micro = list(_sampler(batching=batching, batch_size=4, gradient_accumulation_steps=2, lengths=lengths))
        assert sum(len({_task_of(i) for i in batch}) > 1 for batch in micro) > 0.9 * len(micro)


def test_length_grouping_refuses_mismatched_lengths_and_learned_samplers():
    with pytest.raises(ValueError, match=r"`lengths` holds \[100, 400\] rows per task; the tasks have \[100, 400, 25\]"):
        _sampler(lengths=_lengths()[:2])
    with pytest.raises(ValueError, match="learned task sampler changes its probabilities"):
        _sampler(lengths=_lengths(), task_sampler=build_task_sampler("learned", SIZES))
