"""How one encoder call runs several tasks' LoRA adapters at once: each row, or each position of packed lines, through
its own task's adapter (`mixed_adapters`).

peft's `LoraModel` refuses mixed adapters in training mode; its per-row `adapter_names=` forward is differentiable but
loops over the adapters and scatters each one's rows into the output, a full-size copy per adapter and layer in the
backward pass. Where a layer's adapters are plain LoRA of one rank and one dropout (`stackable`), this module instead
runs peft's base layer alone and adds all adapters' updates in one hook: two masked dense matmuls (`dense_update`)
or one pair of matmuls per adapter over its sorted positions (`grouped_update`). `LoraSharing` (`lora.py`) decides
when to use it; this module only knows peft's `LoraLayer`.
"""

from __future__ import annotations

import contextlib
import functools

import torch
from torch import nn

from .row_packing import key_indices


#: Switches for `benchmarks.sharing_step`, which times the forms these replaced: with `ROUTE_POSITIONS` off, packed
#: lines hold one task's rows (routed per row); with `STACK_ADAPTERS` off, every layer takes peft's per-row forward.
ROUTE_POSITIONS = True
STACK_ADAPTERS = True


def lora_layers(encoder: nn.Module) -> list[nn.Module]:
    """Every layer of `encoder` that peft adapted (the layers a routed call hooks)."""
    from peft.tuners.lora import LoraLayer

    return [module for module in encoder.modules() if isinstance(module, LoraLayer)]


@contextlib.contextmanager
def mixed_adapters(layers: list[nn.Module], adapter_names: list[str], position_adapters: torch.Tensor | None = None):
    """Run the next encoder call through several adapters: one per row (`adapter_names`, one name per row of the
    call), or one per position (`position_adapters`, `[rows, width]` indices into the distinct `adapter_names`).

    Where a layer's adapters for these rows are plain LoRA of one rank and one dropout (`stackable`), peft runs only
    the base layer (adapters disabled for the call) and a hook adds their updates: two masked dense matmuls over all
    adapters (`dense_update`) while that is cheaper (`dense_is_cheaper`), else grouped by adapter
    (`grouped_update`: the positions sorted by adapter, one pair of matmuls per adapter, and back). Elsewhere peft's
    mixed-batch forward runs (as `LoraModel`'s `adapter_names=` does, per row only): it loops over the adapters and
    scatters each one's rows into the output, which in training costs a full-size copy of the output per adapter and
    layer in the backward pass. A step on real dev-suite batches (MiniLM, top two layers, five tasks,
    `python -m benchmarks.sharing_step`): 1.21x hard sharing's per position, 1.43x per packed line, 1.70x through peft.
    """
    names, row_adapters = key_indices(adapter_names)
    plans: dict[tuple[int, ...], AdapterGroups] = {}  # one per input shape: every layer of the call shares it

    def groups(shape: torch.Size, device: torch.device) -> AdapterGroups:
        key = tuple(shape)
        if key not in plans:
            if position_adapters is not None:
                if tuple(position_adapters.shape) != key:
                    raise UnroutableInput(f"LoRA got adapters for positions {tuple(position_adapters.shape)} and an "
                                          f"input of {key}: a position-routed call must keep the rows' layout.")
                index = position_adapters
            else:
                if not key or key[0] != len(adapter_names):
                    raise UnroutableInput(f"LoRA got one adapter for each of {len(adapter_names)} rows and an input "
                                          f"of {key}.")
                index = row_adapters.to(device).view(-1, *([1] * (len(key) - 1))).expand(key)
            plans[key] = AdapterGroups(index, len(names))
        return plans[key]

    handles, base_only = [], []
    for layer in layers:
        if stackable(layer, names):
            base_only.append((layer, layer._disable_adapters))  # peft runs the base layer alone; the hook adds
            layer._disable_adapters = True
            handles.append(layer.register_forward_hook(_adding_update(names, groups), with_kwargs=True))
        elif position_adapters is not None:
            raise ValueError("LoRA position routing needs every layer's adapters stackable (one rank and dropout).")
        else:
            handles.append(layer.register_forward_pre_hook(_passing_adapter_names(adapter_names), with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for layer, disabled in base_only:
            layer._disable_adapters = disabled


class UnroutableInput(ValueError):
    """An adapted layer got an input not laid out by the call's rows, so no adapter can be chosen per row: e.g.
    DeBERTa's relative-position table, which its blocks project through their own (adapted) linear layers once for
    every row. `LoraSharing.encode` then runs each task's rows in a call of their own."""


class AdapterGroups:
    """Where each position of one encoder call goes, built once per call and used by every layer: `index` (each
    position's adapter), `order` / `counts` / `inverse` (the flat positions sorted by adapter, the group sizes, and
    back) for `grouped_update`, and `mask` for `dense_update`."""

    def __init__(self, index: torch.Tensor, num_adapters: int):
        self.index, self.num_adapters = index, num_adapters
        self._masks: dict[tuple, torch.Tensor] = {}

    # The sort is computed on first use only: where every layer takes the dense form, no call needs it.
    @functools.cached_property
    def order(self) -> torch.Tensor:
        return torch.argsort(self.index.reshape(-1), stable=True)

    @functools.cached_property
    def inverse(self) -> torch.Tensor:
        positions = torch.arange(len(self.order), device=self.order.device)
        return torch.empty_like(self.order).index_copy_(0, self.order, positions)

    @functools.cached_property
    def counts(self) -> list[int]:
        return torch.bincount(self.index.reshape(-1), minlength=self.num_adapters).tolist()  # one host sync

    def mask(self, rank: int, scaling: list[float], dtype: torch.dtype) -> torch.Tensor:
        """`[..., adapters * rank]`: each adapter's scaling on the columns of the position's own adapter, 0 elsewhere."""
        key = (rank, tuple(scaling), dtype)
        if key not in self._masks:
            scale = torch.tensor(scaling, dtype=dtype, device=self.index.device)
            one_hot = nn.functional.one_hot(self.index, self.num_adapters).to(dtype) * scale
            self._masks[key] = one_hot.repeat_interleave(rank, dim=-1)
        return self._masks[key]


def _passing_adapter_names(adapter_names: list[str]):
    def hook(module, args, kwargs):
        x = args[0] if args else kwargs.get("x")
        if torch.is_tensor(x) and (x.dim() == 0 or x.shape[0] != len(adapter_names)):
            raise UnroutableInput(f"LoRA got one adapter for each of {len(adapter_names)} rows and an input of "
                                  f"{tuple(x.shape)}.")
        kwargs["adapter_names"] = adapter_names
        return args, kwargs

    return hook


def _adding_update(names: list[str], groups):
    def hook(module, args, kwargs, output):
        x = args[0] if args else kwargs["x"]
        update = dense_update if dense_is_cheaper(module, names) else grouped_update
        return output + update(module, x, names, groups(x.shape[:-1], x.device)).to(output.dtype)

    return hook


def stackable(layer: nn.Module, names: list[str]) -> bool:
    """Whether `names`' adapters on `layer` can run as one grouped update: a LoRA `Linear` whose adapters for these
    rows all exist, are plain LoRA (no DoRA or other variant, no bias), share one rank and one dropout probability."""
    from peft.tuners.lora import Linear

    if not STACK_ADAPTERS or not isinstance(layer, Linear) or any(name not in layer.lora_A for name in names):
        return False
    if any(name in layer.lora_variant or getattr(layer, "lora_bias", {}).get(name, False) for name in names):
        return False
    ranks = {layer.r[name] for name in names}
    dropouts = {getattr(layer.lora_dropout[name], "p", 0.0) for name in names}
    return len(ranks) == 1 and len(dropouts) == 1


def grouped_update(layer: nn.Module, x: torch.Tensor, names: list[str], groups: AdapterGroups) -> torch.Tensor:
    """`scaling * B(A(dropout(x)))` at each position with that position's adapter, for an input `[..., in]`: the
    positions sorted by adapter, one pair of matmuls per adapter on its positions, and put back in place."""
    weight = layer.lora_A[names[0]].weight
    h = layer.lora_dropout[names[0]](x.to(weight.dtype))
    flat = h.reshape(-1, h.shape[-1]).index_select(0, groups.order)
    pieces = [
        nn.functional.linear(nn.functional.linear(chunk, layer.lora_A[name].weight), layer.lora_B[name].weight)
        * layer.scaling[name]
        for name, chunk in zip(names, flat.split(groups.counts)) if chunk.shape[0]
    ]
    update = torch.cat(pieces).index_select(0, groups.inverse)
    return update.reshape(*h.shape[:-1], update.shape[-1])


def dense_update(layer: nn.Module, x: torch.Tensor, names: list[str], groups: AdapterGroups) -> torch.Tensor:
    """The same update as `grouped_update` as two dense matmuls over all adapters at once (their A matrices stacked,
    then each position's columns kept by a mask): more FLOPs, far fewer operations; see `dense_is_cheaper`."""
    weight = layer.lora_A[names[0]].weight
    h = layer.lora_dropout[names[0]](x.to(weight.dtype))
    a = torch.cat([layer.lora_A[name].weight for name in names])  # [adapters * r, in]
    b = torch.cat([layer.lora_B[name].weight for name in names], dim=1)  # [out, adapters * r]
    mask = groups.mask(layer.r[names[0]], [float(layer.scaling[name]) for name in names], weight.dtype)
    return nn.functional.linear(nn.functional.linear(h, a) * mask, b)


#: `dense_update` while all adapters' ranks together are at most this share of a layer's input width: on MiniLM
#: (width 384, five rank-16 adapters: 80 columns) its two matmuls beat five pairs of small ones (a packed dev-suite
#: step 1.21x hard sharing's against 1.25x); with many tasks their extra FLOPs would dominate.
DENSE_MAX_SHARE = 0.25


def dense_is_cheaper(layer: nn.Module, names: list[str]) -> bool:
    return len(names) * layer.r[names[0]] <= DENSE_MAX_SHARE * layer.in_features


def routes_positions(layers: list[nn.Module], names: list[str]) -> bool:
    """Whether a call mixing `names` can route each position (every layer's adapters stack), so packed lines may mix
    tasks as under hard sharing; otherwise rows are routed and a line holds one task's rows."""
    return ROUTE_POSITIONS and bool(layers) and all(stackable(layer, names) for layer in layers)
