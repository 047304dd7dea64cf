import json
from pathlib import Path

import pytest

from hf_mtl.cli import main
from hf_mtl.evaluation.comparison import BUDGET_DEFINITION, planned_task_rows, transfer_table
from hf_mtl.hub.model_card import read_eval_results
from hf_mtl.sampling import MultiTaskBatchSampler, build_task_sampler

from .recipe_helpers import RECIPES, TINY


@pytest.mark.parametrize("batching", ["per_task", "mixed"])
@pytest.mark.parametrize("sampling", ["proportional", "uniform", "annealed"])
def test_planned_rows_account_for_every_step(batching, sampling):
    sizes = [40, 10, 25]
    rows = planned_task_rows(sizes, build_task_sampler(sampling, sizes), total_steps=23, batch_size=4, batching=batching,
                             gradient_accumulation_steps=2, world_size=1, seed=3)
    assert sum(rows) == 23 * 8  # every row of every optimizer step, across epoch boundaries (10 steps per epoch)
    if batching == "per_task":
        assert all(count % 8 == 0 for count in rows)  # whole steps of one task
    again = planned_task_rows(sizes, build_task_sampler(sampling, sizes), total_steps=23, batch_size=4, batching=batching,
                              gradient_accumulation_steps=2, world_size=1, seed=3)
    assert rows == again  # a function of the seed
    # One rule for a run's length and the epochs it reaches into (trainer, transfer report and budget replay).
    plan = MultiTaskBatchSampler(sizes, build_task_sampler(sampling, sizes), batch_size=4, batching=batching,
                                 gradient_accumulation_steps=2)
    assert plan.steps_per_epoch == 10 and plan.epochs_for_steps(23) == 3 and plan.epochs_for_steps(0) == 1
    assert plan.planned_steps(23, 1.0) == 23 and plan.planned_steps(0, 2.5) == 25 and plan.epochs_for_steps(25) == 3


def test_table_verdicts_follow_the_metric_direction_and_the_spread():
    scores = {
        1: {"single": {"a": 0.80, "b": 1.0, "c": 0.5}, "multi": {"a": 0.85, "b": 0.8, "c": 0.6}},
        2: {"single": {"a": 0.82, "b": 1.2, "c": 0.6}, "multi": {"a": 0.86, "b": 0.9, "c": 0.5}},
    }
    rows = {row["task"]: row for row in transfer_table(scores, {"a": "accuracy", "b": "mse", "c": "f1"})}
    assert rows["a"]["delta"] == pytest.approx(0.045) and rows["a"]["verdict"] == "multi-task better"
    assert rows["b"]["delta"] == pytest.approx(-0.25) and rows["b"]["better"] and rows["b"]["lower_is_better"]
    assert rows["c"]["verdict"] == "within seed spread"  # deltas +0.1 and -0.1
    assert rows["a"]["single_std"] == pytest.approx(0.01414, abs=1e-4)
    single_seed = transfer_table({1: scores[1]}, {"a": "accuracy", "b": "mse", "c": "f1"})
    assert single_seed[0]["delta_std"] is None and single_seed[2]["verdict"] == "multi-task better"


def _run_dir(out, seed, label):
    (found,) = (out / "runs" / f"seed{seed}").glob(f"{label}-*")
    return found


def test_transfer_report_end_to_end(tmp_path, capsys):
    out = tmp_path / "report"
    tasks = ("tasks=[{name: sentiment, type: sequence_classification, data: {generated: sentiment}}, "
             "{name: rating, type: regression, metric: mse, data: {generated: rating}}, "
             "{name: topics, type: multi_label_classification, data: {generated: topics}}]")
    overrides = [o for o in TINY if not o.startswith("training.max_steps")] + ["training.num_train_epochs=1", tasks]
    args = ["transfer-report", str(RECIPES / "demo.yaml"), "--seeds", "5", "--output-dir", str(out)]
    args += [item for override in overrides for item in ("-o", override)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[1/4] seed 5: multi-task run" in printed and "[4/4] seed 5: single-task run on 'topics'" in printed
    assert "about " in printed and " left" in printed  # progress with the estimated time

    report = json.loads((out / "transfer.json").read_text())
    assert report["budget"] == BUDGET_DEFINITION and report["seeds"] == [5]
    rows = {row["task"]: row for row in report["tasks"]}
    assert set(rows) == {"sentiment", "rating", "topics"}
    multi_dir = _run_dir(out, 5, "multi_task")
    multi = json.loads((multi_dir / "metrics.json").read_text())
    history = multi["global_step"]
    for task, row in rows.items():
        single = json.loads((_run_dir(out, 5, f"single_{task}") / "metrics.json").read_text())
        assert row["single"] == pytest.approx(single["tasks"][task][row["metric"]])
        assert row["multi"] == pytest.approx(multi["tasks"][task][row["metric"]])
        assert row["delta"] == pytest.approx(row["multi"] - row["single"])
        # same budget: the single-task run trained exactly the steps the multi-task run spent on this task
        assert single["global_step"] == max(1, row["budget_rows"][0] // 4) == row["single_task_steps"][0]
    assert sum(row["budget_rows"][0] for row in rows.values()) == history * 4
    assert rows["rating"]["lower_is_better"]

    markdown = (out / "transfer.md").read_text()
    assert "| `sentiment` | accuracy |" in markdown and "Same budget" in markdown
    assert report["parameters"]["ratio_to_one_single_task_model"] > 1.0 and "single-task model (encoder + its head)" in markdown
    assert (out / "transfer_deltas.png").stat().st_size > 1000 and (multi_dir / "training_curves.png").is_file()
    card = (multi_dir / "README.md").read_text()
    assert "## Multi-task vs single-task" in card and "| `topics` | micro_f1 |" in card
    assert read_eval_results(multi_dir / "README.md")["sentiment"]["accuracy"] == pytest.approx(rows["sentiment"]["multi"])

    # A second report with one more seed reuses the finished runs and trains only the new seed's.
    args[args.index("--seeds") + 1] = "5,6"
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert printed.count(": reused (") == 4 and "seed 6: multi-task run on" in printed
    again = json.loads((out / "transfer.json").read_text())
    assert again["seeds"] == [5, 6] and {r["task"]: r["single_scores"][0] for r in again["tasks"]} == {
        task: row["single"] for task, row in rows.items()}

    # An ablation of the multi-task model only (a task embedding) reuses the single-task baselines (another batching
    # would not: it changes how many rows of each task the multi-task run draws, so the budgets).
    ablation = args[:args.index("--seeds") + 1] + ["5"] + args[args.index("--seeds") + 2:]
    ablation += ["--output-dir", str(tmp_path / "ablation"), "--runs-dir", str(out / "runs"), "--no-model",
                 "-o", "model.task_embedding=cls"]
    assert main(ablation) == 0
    printed = capsys.readouterr().out
    assert printed.count(": reused (") == 3 and "seed 5: multi-task run on" in printed and ": done in " in printed
    first = json.loads((tmp_path / "ablation" / "transfer.json").read_text())["run_dirs"]["seed5/multi_task"]

    # --retrain multi_task trains that run again beside the finished one, still reusing the baselines; a later
    # report finds the newer run.
    assert main(ablation + ["--retrain", "multi_task"]) == 0
    printed = capsys.readouterr().out
    assert printed.count(": reused (") == 3 and ": done in " in printed
    second = json.loads((tmp_path / "ablation" / "transfer.json").read_text())["run_dirs"]["seed5/multi_task"]
    assert second == first + "-retrain2" and (Path(first) / "run.json").is_file() and (Path(second) / "run.json").is_file()
    assert main(ablation) == 0
    assert capsys.readouterr().out.count(": reused (") == 4
    assert json.loads((tmp_path / "ablation" / "transfer.json").read_text())["run_dirs"]["seed5/multi_task"] == second
    with pytest.raises(SystemExit):
        main(ablation + ["--retrain", "everything"])


def test_single_task_baseline_drops_multi_task_only_options():
    from hf_mtl.recipes import load_recipe
    from hf_mtl.recipes.transfer_report import single_task_recipe

    recipe = load_recipe(RECIPES / "demo.yaml", ["model.backbone=tiny", "model.task_embedding=cls", "model.sharing=hierarchical",
                                                 "model.sharing_kwargs={num_shared_layers: 1}", "training.weighting=uncertainty",
                                                 "training.batching=mixed", "training.head_lr_multiplier=5"])
    single = single_task_recipe(recipe, "sentiment")
    assert single.task_names == ["sentiment"] and [t["name"] for t in single.raw["tasks"]] == ["sentiment"]
    assert single.config_kwargs["task_embedding"] == "none" and single.config_kwargs["sharing"] == "hard"
    args = single.training_arguments()
    assert (args.weighting, args.batching, args.head_lr_multiplier) == ("static", "per_task", 5.0)  # kept: not multi-task-only


@pytest.mark.parametrize("freeze, baseline", [(True, "lora"), (False, "hard")])
def test_single_task_baseline_of_lora_keeps_adapters_only_on_a_frozen_backbone(freeze, baseline):
    from hf_mtl.recipes import load_recipe
    from hf_mtl.recipes.transfer_report import single_task_recipe

    options = f"{{r: 4, freeze_backbone: {str(freeze).lower()}}}"
    recipe = load_recipe(RECIPES / "demo.yaml", ["model.backbone=tiny", "model.sharing=lora", f"model.sharing_kwargs={options}"])
    single = single_task_recipe(recipe, "sentiment")
    assert single.config_kwargs["sharing"] == baseline
    assert (single.config_kwargs.get("sharing_kwargs") or {}) == ({} if baseline == "hard" else {"r": 4, "freeze_backbone": True})


def test_transfer_report_needs_two_tasks_and_validation_data(tmp_path, capsys):
    code = main(["transfer-report", str(RECIPES / "demo.yaml"), "-o", "tasks=[{name: a, type: regression, data: {generated: rating}}]"])
    assert code == 2
    assert "at least two tasks" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse rejects the value before anything runs
        main(["transfer-report", str(RECIPES / "demo.yaml"), "--seeds", "1,1"])
    assert "no repeats" in capsys.readouterr().err


def test_augmentation_report_compares_each_augmented_task_under_the_same_updates(tmp_path, capsys):
    out = tmp_path / "augmentation"
    tasks = ("tasks=[{name: sentiment, type: sequence_classification, data: {generated: sentiment}, "
             "augment: {ratio: 1.0, methods: [random_swap]}}, "
             "{name: entities, type: token_classification, data: {generated: entities}, augment: {ratio: 0.5}}, "
             "{name: rating, type: regression, metric: mse, data: {generated: rating}}]")
    overrides = [o for o in TINY if not o.startswith("training.max_steps")]
    overrides += ["training.num_train_epochs=1", tasks]  # 16 training rows per task (TINY), 4 rows per step
    args = ["augmentation-report", str(RECIPES / "demo.yaml"), "--seeds", "3,4", "--output-dir", str(out)]
    args += [item for override in overrides for item in ("-o", override)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[1/8] seed 3: 'sentiment' plain" in printed and "[8/8] seed 4: 'entities' augmented (4 steps)" in printed
    report = json.loads((out / "augmentation.json").read_text())
    rows = {row["task"]: row for row in report["rows"]}
    assert set(rows) == {"sentiment", "entities"}  # `rating` has no augment: entry
    assert rows["sentiment"]["train_rows"] == {"plain": 16, "augmented": 32}
    assert rows["entities"]["train_rows"] == {"plain": 16, "augmented": 24}
    for task, row in rows.items():
        for seed, plain, augmented in zip((3, 4), row["plain_scores"], row["augmented_scores"]):
            runs = out / "runs" / f"seed{seed}"
            plain_run = json.loads((runs / f"{task}_plain" / "metrics.json").read_text())
            augmented_run = json.loads((runs / f"{task}_augmented" / "metrics.json").read_text())
            assert plain_run["tasks"][task][row["metric"]] == pytest.approx(plain)
            assert augmented_run["tasks"][task][row["metric"]] == pytest.approx(augmented)
            assert plain_run["global_step"] == augmented_run["global_step"] == 4  # same updates, more distinct rows
        assert row["delta"] == pytest.approx(row["augmented"] - row["plain"])
    assert "| `sentiment` | accuracy |" in (out / "augmentation.md").read_text()
    assert (out / "augmentation_deltas.png").stat().st_size > 1000


def test_augmentation_report_needs_an_augmented_task(capsys):
    code = main(["augmentation-report", str(RECIPES / "demo.yaml"), "-o",
                 "tasks=[{name: a, type: regression, data: {generated: rating}}]"])
    assert code == 2
    assert "give at least one task an `augment:` entry" in capsys.readouterr().err


def test_runs_of_other_code_are_kept_and_found(tmp_path):
    """A run's folder names its code: a rerun under other code trains beside the earlier run, not over it. Reuse
    takes the same run first and, with `any_code`, the newest one of the same recipe (old code-less folders too)."""
    from hf_mtl.recipes.run_cache import RunRecord, find_reusable, run_dir_name

    def record(code, finished=None):
        return RunRecord(label="multi_task", seed=1, fingerprint=f"run-{code}", fingerprint_without_code="recipe12345",
                         code=code, scores={"t": {"accuracy": 0.5}}, steps=3, seconds=1.0, finished=finished)

    seed_dir = tmp_path / "seed1"
    legacy = seed_dir / "multi_task-recipe12"  # recorded before folders named their code
    record("aaaa0000").save(legacy)
    newer = seed_dir / run_dir_name("multi_task", "recipe12345", "bbbb1111")
    record("bbbb1111", finished="2026-12-06T17:00:00+00:00").save(newer)
    assert newer.name == "multi_task-recipe12-bbbb1111"
    record("cccc2222").save(seed_dir / "multi_task-otherrec-cccc2222")  # another recipe: never a candidate

    assert find_reusable(seed_dir, "multi_task", "run-aaaa0000", "recipe12345", any_code=False)[0] == legacy
    assert find_reusable(seed_dir, "multi_task", "run-bbbb1111", "recipe12345", any_code=False)[0] == newer
    assert find_reusable(seed_dir, "multi_task", "run-dddd3333", "recipe12345", any_code=False) is None
    path, found = find_reusable(seed_dir, "multi_task", "run-dddd3333", "recipe12345", any_code=True)
    assert path == newer and found.code == "bbbb1111"
    assert find_reusable(seed_dir, "single_x", "run-aaaa0000", "recipe12345", any_code=True) is None
