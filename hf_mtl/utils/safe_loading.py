"""Weights load from safetensors only, unless the caller opts in to pickles; unreadable files get clear errors.

`MultiTaskModel.from_pretrained` and `MultiTaskModel.from_backbone` pass `use_safetensors=True` to Transformers when
the caller does not set it: a folder or repository with only `pytorch_model.bin` (a pickle: unpickling can run code)
is refused with an [`UnsafeCheckpointError`] that says how to opt in. Opting in is Transformers' own switch,
`use_safetensors=False` (or `None`: prefer safetensors, fall back to pickles); Transformers then reads the pickle
with `torch.load(weights_only=True)`. Nothing in hf_mtl needs `trust_remote_code`: the model classes register with
the Auto classes when `hf_mtl` is imported.

A `*.safetensors` file whose header cannot be read (truncated download, garbage) fails with a [`CheckpointError`]
naming the file, checked before Transformers starts loading.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator

from safetensors import SafetensorError, safe_open

from ..errors import CheckpointError


PICKLE_WEIGHT_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


class UnsafeCheckpointError(CheckpointError, OSError):
    """Only pickle-based weights were found and the caller did not opt in to loading them.

    It is also an `OSError`, the type Transformers raises when `from_pretrained` finds no usable weights file.
    """


def _local_folder(source, subfolder: str) -> str | None:
    path = os.path.join(str(source), subfolder or "")
    return path if os.path.isdir(path) else None


def check_safetensors_files(folder: str) -> None:
    """Raise [`CheckpointError`] naming the first `*.safetensors` file of `folder` whose header cannot be read."""
    for path in sorted(glob.glob(os.path.join(folder, "*.safetensors"))):
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError) as error:
            raise CheckpointError(
                f"{path} is not a readable safetensors file ({error}): it is truncated or corrupted (an interrupted "
                "download or copy?). Re-download it (`force_download=True` for a Hub model) or save the model again."
            ) from error


def _refusal(source, found: list[str]) -> str:
    where = f" (it holds {', '.join(found)})" if found else ""
    return (
        f"{str(source)!r} has no safetensors weights{where}. hf_mtl loads safetensors only by default, because "
        "unpickling a `.bin` file can run arbitrary code. If you trust this checkpoint, opt in with "
        "`from_pretrained(..., use_safetensors=False)` (Transformers then reads it with torch.load(weights_only=True)), "
        "and re-save it with `save_pretrained` to get a model.safetensors."
    )


@contextlib.contextmanager
def safe_weights_loading(source, kwargs: dict) -> Iterator[None]:
    """Wraps a Transformers `from_pretrained` call: defaults `kwargs["use_safetensors"]` to `True` (unless the
    caller chose), checks local safetensors headers first, and turns the resulting failures into clear errors."""
    defaulted = "use_safetensors" not in kwargs
    if defaulted:
        kwargs["use_safetensors"] = True
    folder = _local_folder(source, kwargs.get("subfolder", ""))
    if (folder is None and os.path.isfile(str(source)) and kwargs["use_safetensors"]
            and not str(source).endswith(".safetensors")):
        raise UnsafeCheckpointError(_refusal(source, [os.path.basename(str(source))]))
    if folder is not None:
        check_safetensors_files(folder)
    try:
        yield
    except SafetensorError as error:  # a remote file, downloaded into the cache, that does not parse
        raise CheckpointError(
            f"The weights of {str(source)!r} are not a readable safetensors file ({error}). Re-download them with "
            "`force_download=True`."
        ) from error
    except OSError as error:
        if not (defaulted and kwargs.get("use_safetensors") and "safetensors" in str(error)):
            raise
        found = [name for name in PICKLE_WEIGHT_FILES if folder and os.path.isfile(os.path.join(folder, name))]
        if folder is not None and not found:
            raise  # nothing to opt in to: Transformers' own "no file named ..." error is the right one
        raise UnsafeCheckpointError(_refusal(source, found) + f" (Transformers said: {error})") from error
