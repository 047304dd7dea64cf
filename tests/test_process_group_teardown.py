"""The process group is torn down while the interpreter is whole: nothing left holding it at exit."""

import gc
import weakref

import pytest
import torch
import torch.distributed as dist

from hf_mtl.recipes import run as recipe_run
from hf_mtl.utils.distributed import end_process_group


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield  # not the group itself: pytest would hold it
    if dist.is_initialized():
        dist.destroy_process_group()


class _Holder:
    """A trainer-like owner of a DDP wrapper in a reference cycle (as a trainer and its callbacks are)."""

    def __init__(self):
        self.model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(2, 2))
        self.me = self


@pytest.mark.usefixtures("one_process_group")
def test_end_process_group_frees_a_group_still_held_in_a_reference_cycle():
    holder = _Holder()
    assert holder.model.process_group is dist.group.WORLD
    group = weakref.ref(dist.group.WORLD)
    del holder
    gc.disable()  # the cycle must not be collected by chance before the call
    try:
        end_process_group()
        alive = group() is not None
    finally:
        gc.enable()
    assert not dist.is_initialized()
    assert not alive  # `destroy_process_group` alone leaves the group to the cycle's DDP until interpreter exit


def test_end_process_group_without_a_group_does_nothing():
    assert not dist.is_initialized()
    end_process_group()
    end_process_group(wait_for_others=False)


@pytest.mark.parametrize("fails", [False, True])
def test_training_entry_waits_for_the_other_processes_only_after_a_finished_run(monkeypatch, fails):
    calls = []

    def train(recipe, log):
        if fails:
            raise RuntimeError("bad batch")

        class Trainer:
            def is_world_process_zero(self):
                return False

        return recipe_run.RunResult(output_dir=None, trainer=Trainer(), data={}, main_metrics={})

    monkeypatch.setattr(recipe_run, "train_recipe", train)
    monkeypatch.setattr(recipe_run, "end_process_group", lambda **kwargs: calls.append(kwargs))
    if fails:
        with pytest.raises(RuntimeError, match="bad batch"):
            recipe_run.run_training_entry(recipe=None)
    else:
        assert recipe_run.run_training_entry(recipe=None) == 0
    # A process that failed must not wait at a barrier the others may never reach.
    assert calls == [{"wait_for_others": not fails}]
