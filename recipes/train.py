"""Train from a recipe; the same code as `hf-mtl train`, as a script for launchers:

    python recipes/train.py recipes/demo.yaml --override training.max_steps=50
    accelerate launch --num_processes 2 recipes/train.py recipes/demo.yaml
    torchrun --nproc_per_node 2 recipes/train.py recipes/demo.yaml
"""

import sys

from hf_mtl.cli import main


if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
