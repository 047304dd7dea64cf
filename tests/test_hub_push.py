"""The push path, end to end, against the local Hub of `hub_server.py`.

`HF_ENDPOINT` is read when huggingface_hub / transformers are imported, and this test session imported them offline
(conftest), so the Transformers-level push runs in a subprocess started with the right environment: it is this very
module, run as `python -m tests.test_hub_push ARGS.json` (see `_client`). Server-level checks stay in-process: they pass
`endpoint=` to huggingface_hub explicitly, and the `hub` fixture lifts `constants.HF_HUB_OFFLINE` (read at request
time) for the duration of the test.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.hub.model_card import read_eval_results

from .hub_server import USER, run_local_hub


TOKEN = "hf_" + "Zq4Xw9Lk2Pm7Rt5Vb8Nc3Hd6Jf1Gs0Ya"  # shaped like a real token, so card redaction would catch it too
ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the first example is good", "a second one", "the sky is blue"]
EVAL_RESULTS = {"sst2": {"accuracy": 0.8125, "f1": 0.7999}, "ner": {"seqeval_f1": 0.4375}}


def assert_token_only_in_authorization(hub, token):
    """Every request that carries the token carries it as `Authorization: Bearer`, and nowhere else."""
    assert hub.requests
    for request in hub.requests:
        assert request.headers.get("authorization") in (None, f"Bearer {token}"), request.path
        others = {name: value for name, value in request.headers.items() if name != "authorization"}
        assert token not in json.dumps(others) and token not in request.path, request.path
        assert token.encode() not in request.body, request.path
        # Writes authenticate (`ModelCard.validate` posts the card to /api/validate-yaml anonymously).
        if request.method == "POST" and request.path != "/api/validate-yaml":
            assert request.headers.get("authorization") == f"Bearer {token}", request.path


# ---------------------------------------------------------------- in-process: the server speaks huggingface_hub


@pytest.fixture
def hub(monkeypatch):
    """A local Hub for in-process huggingface_hub calls, which name it with `endpoint=` (patching
    `constants.ENDPOINT` is not enough: download URL templates were built from it at import)."""
    from huggingface_hub.utils import _detect_agent

    with run_local_hub(token=TOKEN) as hub:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        # Building request headers fetches an "agent harness" registry from the default endpoint once per process:
        # give it an empty one, so the in-process tests never try the network.
        monkeypatch.setattr(_detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}}, raising=False)
        yield hub


def test_local_hub_create_upload_download(hub, tmp_path):
    folder = tmp_path / "upload"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"a": 1}')
    (folder / "sub" / "weights.bin").write_bytes(bytes(range(256)) * 40)
    api = HfApi(endpoint=hub.url, token=TOKEN)
    assert api.whoami()["name"] == USER
    repo_id = api.create_repo("tiny").repo_id
    assert repo_id == f"{USER}/tiny" and api.create_repo("tiny", exist_ok=True).repo_id == repo_id
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="First upload")
    assert hub.commits[-1].summary == "First upload"
    assert hub.repos[repo_id].files["sub/weights.bin"] == (folder / "sub" / "weights.bin").read_bytes()
    assert sorted(api.list_repo_files(repo_id)) == ["config.json", "sub/weights.bin"]
    path = hf_hub_download(repo_id, "sub/weights.bin", endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert Path(path).read_bytes() == (folder / "sub" / "weights.bin").read_bytes()
    # unchanged files are skipped, as on the Hub (the preupload answer carries their git oid)
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Nothing new")
    assert hub.commits[-1].summary == "First upload"
    (folder / "config.json").write_text('{"a": 2}')
    (folder / "sub" / "weights.bin").unlink()
    api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message="Second", delete_patterns=["sub/*"])
    assert set(hub.commits[-1].added) == {"config.json"} and hub.commits[-1].deleted == ["sub/weights.bin"]
    assert hub.repos[repo_id].files == {"config.json": b'{"a": 2}'}
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt", endpoint=hub.url, cache_dir=tmp_path / "cache")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(f"{USER}/nope")
    assert hub.unhandled == []
    assert_token_only_in_authorization(hub, TOKEN)
    with pytest.raises(HfHubHTTPError, match="401"):
        HfApi(endpoint=hub.url, token="hf_wrong").create_repo("other")
    assert list(hub.repos) == [repo_id]


def test_local_hub_rejects_what_it_does_not_implement(hub, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo("tiny")
    with pytest.raises(Exception, match="The local Hub does not implement POST .*/discussions"):
        api.upload_folder(repo_id=f"{USER}/tiny", folder_path=tmp_path, create_pr=True)
    assert hub.unhandled == [f"POST /api/models/{USER}/tiny/discussions"]
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.upload_file(
            path_or_fileobj=b"---\nkey: [unclosed\n---\n# card", path_in_repo="README.md", repo_id=f"{USER}/tiny"
        )
    assert len(hub.commits) == 1  # only the initial commit


@pytest.mark.timeout(60)
def test_push_fails_fast_and_clearly_when_offline(monkeypatch, tiny_encoder_config):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_encoder_config, tasks=[{"name": "sts", "type": "regression"}]))
    start = time.perf_counter()
    with pytest.raises(OfflineModeIsEnabled, match="offline mode is enabled.*HF_HUB_OFFLINE"):
        model.push_to_hub("mtl-tiny", token=TOKEN)
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------- subprocess: what a Transformers user does


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_push_to_hub_and_reload_with_auto_model(tmp_path):
    # Imported here: in the subprocess, importing conftest would set HF_HUB_OFFLINE again.
    from .conftest import ALL_TASKS
    from .test_model_card import save_tiny_checkpoint

    save_tiny_checkpoint(tmp_path / "local", ALL_TASKS)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"local": str(tmp_path / "local"), "work": str(tmp_path / "work"), "token": TOKEN}))
    with run_local_hub(token=TOKEN) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
        env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_DISABLE_TELEMETRY="1")
        done = subprocess.run(
            [sys.executable, "-m", "tests.test_hub_push", str(args)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert TOKEN not in done.stdout and TOKEN not in done.stderr
        report = json.loads(done.stdout.strip().splitlines()[-1])

        assert hub.unhandled == []
        assert_token_only_in_authorization(hub, TOKEN)
        pushed, uploaded, direct = f"{USER}/mtl-tiny", f"{USER}/mtl-tiny-folder", f"{USER}/mtl-tiny-direct"
        messages = [(c.repo_id, c.summary) for c in hub.commits if c.summary != "initial commit"]
        assert messages == [
            (pushed, "Upload model"),
            (pushed, "Upload tokenizer"),
            (pushed, "Add hf_mtl model card"),
            (uploaded, "Upload hf_mtl model, tokenizer and card"),
            (direct, "Upload model"),
            (direct, "Upload tokenizer"),
            (pushed, "Upload model"),
        ]
        assert not any(TOKEN.encode() in content for commit in hub.commits for content in commit.added.values())
        for repo_id in (pushed, uploaded):  # (the direct push has no `training`: checked below)
            files = hub.repos[repo_id].files
            assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(files)
            card = ModelCard(files["README.md"].decode())
            assert read_eval_results(card) == EVAL_RESULTS
            assert f'AutoModel.from_pretrained("{repo_id}")' in card.text and "| hub_token" not in card.text
            assert report[repo_id] == {"single_equal": True, "mixed_equal": True, "eval_results": EVAL_RESULTS}
        # `model.push_to_hub` writes hf_mtl's card, not Transformers' generic one: without card arguments a card
        # from the config (tasks, usage with `import hf_mtl`), with them the results too ...
        first_push = next(commit for commit in hub.commits if commit.summary == "Upload model")
        first_card = ModelCard(first_push.added["README.md"].decode())
        assert first_card.data.library_name == "hf_mtl" and "hf_mtl" in first_card.data.tags
        assert "pip install hf_mtl" in first_card.text and not read_eval_results(first_card)
        direct_card = ModelCard(hub.repos[direct].files["README.md"].decode())
        assert read_eval_results(direct_card) == EVAL_RESULTS and "| `sst2` | accuracy | 0.8125 |" in direct_card.text
        assert report[direct]["single_equal"] and report[direct]["mixed_equal"]
        # ... and a card already on the repo (here the one with results) is kept when the weights are pushed again.
        assert read_eval_results(ModelCard(hub.repos[pushed].files["README.md"].decode())) == EVAL_RESULTS
        assert "nlu" in ModelCard(hub.repos[pushed].files["README.md"].decode()).data.tags


def _client(args_path: str) -> None:
    """Runs in the subprocess: push the tiny model two ways, download each with AutoModel, compare outputs."""
    import torch
    from huggingface_hub import create_repo, upload_folder
    from transformers import AutoModel, AutoTokenizer

    from hf_mtl.hub.model_card import build_model_card, save_model_card

    args = json.loads(Path(args_path).read_text())
    token = args["token"]
    model = AutoModel.from_pretrained(args["local"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(args["local"])
    card_kwargs = dict(
        eval_results=EVAL_RESULTS,
        training={"weighting": "equal", "learning_rate": 1e-3, "seed": 0, "hub_token": token},
        datasets={task: "generated by the test: random ids" for task in model.config.task_names},
    )

    # 1. The PreTrainedModel / tokenizer / ModelCard push_to_hub methods (the repo is created in the user's namespace).
    repo_id = model.push_to_hub("mtl-tiny", token=token).repo_url.repo_id
    tokenizer.push_to_hub(repo_id, token=token)
    build_model_card(model.config, model_id=repo_id, **card_kwargs).push_to_hub(
        repo_id, token=token, commit_message="Add hf_mtl model card"
    )
    # 2. A saved folder and upload_folder, as Trainer.push_to_hub does.
    folder_id = f"{repo_id}-folder"
    work = Path(args["work"])
    model.save_pretrained(work)
    tokenizer.save_pretrained(work)
    save_model_card(work, model_id=folder_id, **card_kwargs)
    create_repo(folder_id, token=token)
    upload_folder(
        repo_id=folder_id, folder_path=work, commit_message="Upload hf_mtl model, tokenizer and card", token=token
    )

    # 3. model.push_to_hub with card arguments: hf_mtl's card with the results, in the same commit as the weights.
    direct_id = model.push_to_hub(f"{repo_id}-direct", token=token, license="apache-2.0", **card_kwargs).repo_url.repo_id
    tokenizer.push_to_hub(direct_id, token=token)
    # 4. Pushing the weights again keeps the card already there (adding the tags asked for).
    model.push_to_hub(repo_id, token=token, tags=["nlu"])

    report = {}
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    task_ids = torch.tensor([model.config.task_index(name) for name in ("sst2", "ner", "sts")])
    for hub_id in (repo_id, folder_id, direct_id):
        loaded = AutoModel.from_pretrained(hub_id).eval()  # HF_TOKEN from the environment
        hub_batch = AutoTokenizer.from_pretrained(hub_id)(TEXTS, padding=True, return_tensors="pt")
        with torch.no_grad():
            single = torch.equal(loaded(**hub_batch, task="sst2").logits, model(**batch, task="sst2").logits)
            mixed_hub, mixed = loaded(**hub_batch, task_ids=task_ids), model(**batch, task_ids=task_ids)
        mixed_equal = all(torch.equal(mixed_hub.task_logits[k], mixed.task_logits[k]) for k in mixed.task_logits)
        report[hub_id] = {
            "single_equal": single and torch.equal(hub_batch["input_ids"], batch["input_ids"]),
            "mixed_equal": mixed_equal,
            "eval_results": read_eval_results(ModelCard.load(hub_id)),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    _client(sys.argv[1])


# ---------------------------------------------------------------- subprocess: Trainer's own push path, from a recipe


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_trainer_push_to_hub_from_a_recipe_sends_model_tokenizer_and_card(tmp_path):
    """`hf-mtl train` with `push_to_hub`, `hub_model_id`, `hub_token` (the token read from the environment by the recipe):
    Trainer.push_to_hub creates the repo and uploads the output folder, with OUR card (MultiTaskTrainer.create_model_card)."""
    from .recipe_helpers import TINY

    out = tmp_path / "out"
    overrides = TINY + [
        f"training.output_dir={out}", "training.push_to_hub=true", "training.hub_model_id=mtl-recipe",
        "training.hub_token=${HUB_TEST_TOKEN}",  # expanded from the environment: never on a command line
    ]
    with run_local_hub(token=TOKEN) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_OFFLINE"))}
        env.update(HF_ENDPOINT=hub.url, HUB_TEST_TOKEN=TOKEN, HF_HOME=str(tmp_path / "hf_home"),
                   HF_HUB_DISABLE_TELEMETRY="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-m", "hf_mtl.cli", "train", "recipes/demo.yaml", *[x for o in overrides for x in ("-o", o)]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=360, check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert TOKEN not in done.stdout and TOKEN not in done.stderr
        assert hub.unhandled == []
        assert_token_only_in_authorization(hub, TOKEN)
        repo_id = f"{USER}/mtl-recipe"
        pushes = [c for c in hub.commits if c.repo_id == repo_id and c.summary != "initial commit"]
        assert [c.summary for c in pushes] == ["hf-mtl: demo (sentiment, rating, entities, topics, paraphrase)"]
        files = hub.repos[repo_id].files
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md",
                "metrics.json", "training_curves.png", "recipe.yaml"} <= set(files)
        assert files["model.safetensors"] == (out / "model.safetensors").read_bytes()
        # the token is in nothing that was sent, nor in anything written locally (card, recipe.yaml, training_args.bin)
        assert not any(TOKEN.encode() in content for commit in hub.commits for content in commit.added.values())
        assert not any(TOKEN.encode() in path.read_bytes() for path in out.rglob("*") if path.is_file())
        card = ModelCard(files["README.md"].decode())
        metrics = json.loads(files["metrics.json"])["tasks"]
        results = read_eval_results(card)
        assert set(results) == set(metrics)
        for task, values in metrics.items():
            assert results[task] == pytest.approx(values)
        assert f'AutoModel.from_pretrained("{repo_id}")' in card.text and "Generated data." in card.text
        assert "hf_mtl" in card.data.tags and "hub_token" not in card.text.split("## Training procedure")[1].split("<details>")[0]
