"""The forward pass: token ids → pooled vectors, computing only what is pooled.

Two ideas make it cheaper than ``model(..., output_hidden_states=True)``:

* **Early exit.** A forward pre-hook on the decoder block *after* the pooled layer
  captures that block's input (which is ``hidden_states[layer]``) and stops the
  pass, so later blocks, the final norm and the LM head never run.
* **Shared-prefix KV reuse.** Every prompt of a template starts with the same
  tokens. Their key/value cache is computed once (transformers' ``DynamicCache``)
  and each batch runs only the remaining tokens against it, with explicit position
  ids and an attention mask covering the cached prefix.

Both are exact: positions, masks and the tokens themselves are those of the whole
prompt, so the result equals ``hidden_states[layer][0, -1]`` of the unpadded prompt.
Prompts are right-padded: with a causal mask the real tokens never see the pads,
and no attention row is fully masked.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from promptembed.engine.pooling import last_token_pool, mean_pool


class _EarlyExit(Exception):
    """Raised by the pre-hook once the pooled layer's states are captured."""


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Find the stack of decoder blocks of a transformers base model.

    It is the ``ModuleList`` whose length is the config's number of hidden layers
    (``layers`` in Llama/Gemma/Qwen, ``h`` in GPT-2, ``decoder.layers`` in OPT).

    Raises:
        ValueError: If no such list exists.

    """
    n_layers = num_layers(model)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            return module
    raise ValueError(
        f"cannot find the {n_layers} decoder blocks of {type(model).__name__}; "
        "this architecture is not supported"
    )


def num_layers(model: nn.Module) -> int:
    """Number of decoder blocks, from the (text) config."""
    config = model.config.get_text_config()
    return int(config.num_hidden_layers)


def resolve_layer(layer: int, n_layers: int) -> int:
    """Turn a ``hidden_states``-style index (negative counts from the end) into 0..n.

    Example:
        >>> resolve_layer(-1, 30), resolve_layer(-2, 30), resolve_layer(5, 30)
        (30, 29, 5)

    """
    size = n_layers + 1  # hidden_states holds the embeddings plus one entry per block
    if not -size <= layer < size:
        raise ValueError(
            f"layer {layer} is out of range for a model with {n_layers} layers; "
            f"valid values are {-size}..{n_layers} (as in hidden_states)"
        )
    return layer % size


@dataclass
class _Prefix:
    """The cached constant prefix of a template."""

    ids: list[int]
    cache: Any  # transformers Cache holding len(ids) positions
    hidden: dict[int, torch.Tensor]  # layer -> (1, len(ids), dim) states, for mean pooling


class LayerForward:
    """Runs prompts up to one hidden layer and pools them.

    Args:
        model: A transformers base model (no LM head), already on its device.
        layer: Pooled layer, ``hidden_states`` indexing; a list pools several at once
            (one pass, stopping after the deepest), as `tune` needs.
        pooling: ``last`` or ``mean``.
        pad_id: Token id used for (right) padding; never attended to by real tokens.
        prepend: Token Prepending: ``(start, end, index)``. The input of blocks
            ``start..end-1`` at prompt position ``index`` (a placeholder) is overwritten
            with the pooled (last real) token's state, i.e. the previous block's output.
        contrast: Contrastive prompting ``(block, alpha)``: in that block, the last
            token's contextualised values become ``alpha * (own - auxiliary)``.

    Example:
        >>> from transformers import LlamaConfig, LlamaModel
        >>> cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
        ...                   num_hidden_layers=2, num_attention_heads=2)
        >>> fwd = LayerForward(LlamaModel(cfg).eval(), layer=-2)
        >>> fwd([[1, 5, 7], [1, 9]]).shape
        torch.Size([2, 16])

    """

    def __init__(
        self,
        model: nn.Module,
        layer: int | Sequence[int],
        pooling: Literal["last", "mean"] = "last",
        pad_id: int = 0,
        prepend: tuple[int, int, int] | None = None,
        contrast: tuple[int, float] | None = None,
    ) -> None:
        self.model = model
        self.n_layers = num_layers(model)
        self.multi = not isinstance(layer, int)
        wanted = [layer] if isinstance(layer, int) else list(layer)
        if not wanted:
            raise ValueError("at least one layer is needed")
        self.layers = [resolve_layer(x, self.n_layers) for x in wanted]
        self.layer = self.layers[0]
        self.pooling = pooling
        self.pad_id = pad_id
        # hidden_states[n] is after the final norm: the full model's output. Any other
        # index i is the input of block i, where a pre-hook can read it; the pass stops
        # at the deepest such block unless the final output is wanted too.
        blocks = decoder_layers(model) if any(x < self.n_layers for x in self.layers) else None
        self._hooked = {x: blocks[x] for x in set(self.layers) if x < self.n_layers}
        self._stop_at = None if self.n_layers in self.layers else max(self._hooked)
        self._cache_kw = cache_keyword(model)
        self.prefix: _Prefix | None = None
        self.prepend = prepend
        self.contrast = contrast
        if contrast is not None:
            value_projection(model, contrast[0])  # refuse an unsupported block early
            if contrast[0] >= max(self.layers):
                raise ValueError(
                    f"contrastive block {contrast[0]} must come before the pooled layer "
                    f"(hidden_states index {max(self.layers)}), or it cannot change it"
                )
        if prepend is not None and not 1 <= prepend[0] < prepend[1] <= self.n_layers:
            raise ValueError(
                f"token_prepending {list(prepend[:2])} is out of range for this model's "
                f"{self.n_layers} decoder blocks: valid spans are [start, end] with "
                f"1 <= start < end <= {self.n_layers}"
            )

    @property
    def device(self) -> torch.device:
        """The model's device."""
        return next(self.model.parameters()).device

    # -- the pass ---------------------------------------------------------------------
    def _run(
        self, extra: Sequence[tuple[nn.Module, Any]] = (), **inputs: Any
    ) -> tuple[dict[int, torch.Tensor], Any]:
        """Forward up to the deepest pooled layer; return states per layer and the cache.

        ``extra`` holds more ``(module, forward pre-hook)`` pairs for this pass only
        (Token Prepending, contrastive steering); they run after the capture hooks, so
        ``hidden_states[i]`` stays block ``i-1``'s output, as in the reference code.
        """
        captured: dict[int, torch.Tensor] = {}

        def make_hook(index: int):
            def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
                captured[index] = args[0] if args else kwargs["hidden_states"]
                if index == self._stop_at:
                    raise _EarlyExit

            return hook

        handles = [
            block.register_forward_pre_hook(make_hook(index), with_kwargs=True)
            for index, block in self._hooked.items()
        ]
        handles += [module.register_forward_pre_hook(h, with_kwargs=True) for module, h in extra]
        try:
            out = self.model(**inputs, return_dict=True)
            captured[self.n_layers] = out.last_hidden_state
        except _EarlyExit:
            pass
        finally:
            for handle in handles:
                handle.remove()
        return captured, inputs.get(self._cache_kw)

    @torch.inference_mode()
    def set_prefix(self, ids: Sequence[int]) -> None:
        """Compute and keep the KV cache of a constant prompt prefix.

        Args:
            ids: The prefix's token ids, exactly as they start every prompt.

        """
        from transformers import DynamicCache

        self.prefix = None
        if len(ids) < 2:
            return  # nothing worth caching
        cache = DynamicCache(config=self.model.config)
        input_ids = torch.tensor([list(ids)], device=self.device)
        states, cache = self._run(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            position_ids=torch.arange(len(ids), device=self.device)[None],
            use_cache=True,
            **{self._cache_kw: cache},
        )
        self.prefix = _Prefix(list(ids), cache, states)

    def uses_prefix(self, ids: Sequence[int]) -> bool:
        """Whether ``ids`` starts with the cached prefix (so reuse is exact)."""
        p = self.prefix
        return p is not None and len(ids) > len(p.ids) and list(ids[: len(p.ids)]) == p.ids

    @torch.inference_mode()
    def __call__(
        self,
        batch: Sequence[Sequence[int]],
        *,
        with_prefix: bool = False,
        subtract: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pool one batch of token-id lists.

        Args:
            batch: Token ids per prompt (unpadded, any lengths).
            with_prefix: All prompts start with the cached prefix; run only their rest.
            subtract: Contrastive prompting: per row, the auxiliary prompt's
                contextualised values (:meth:`values`) to steer away from.

        Returns:
            float32 on the model's device: ``(batch, dim)`` for one layer, or
            ``(batch, len(layers), dim)`` when built with several.

        """
        inputs, mask, ones = self._inputs(batch, with_prefix)
        last = mask.sum(dim=1) - 1
        extra: list[tuple[nn.Module, Any]] = []
        if self.prepend is not None:
            start, end, at = self.prepend
            column = torch.full_like(last, at - ones.shape[1])
            blocks = decoder_layers(self.model)
            hook = _prepend_hook(column, last)
            extra += [(blocks[i], hook) for i in range(start, end)]
        if self.contrast is not None and subtract is not None:
            block, alpha = self.contrast
            extra.append((value_projection(self.model, block), _steer_hook(last, subtract, alpha)))
        states, _ = self._run(extra, **inputs)
        pooled = [self._pool(states[x], mask, ones, x) for x in self.layers]
        return torch.stack(pooled, dim=1) if self.multi else pooled[0]

    @torch.inference_mode()
    def values(self, batch: Sequence[Sequence[int]], block: int) -> torch.Tensor:
        """Contextualised values of ``block`` at each prompt's last token.

        They are the input of the block's attention output projection; the pass stops
        there. Prompts that start with the cached prefix reuse it, the others run whole.
        """
        proj = value_projection(self.model, block)
        out = torch.empty((len(batch), proj.in_features), device=self.device)
        use = [self.uses_prefix(x) for x in batch]
        for group in (True, False):
            index = [i for i, u in enumerate(use) if u is group]
            if not index:
                continue
            inputs, mask, _ = self._inputs([batch[i] for i in index], group)
            got: list[torch.Tensor] = []
            self._run([(proj, _grab_hook(mask.sum(dim=1) - 1, got))], **inputs)
            out[index] = got[0]
        return out

    def _inputs(
        self, batch: Sequence[Sequence[int]], with_prefix: bool
    ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        """Right-padded model inputs, the mask of real tokens, and the prefix's ones."""
        offset = len(self.prefix.ids) if with_prefix and self.prefix is not None else 0
        rows = [list(ids[offset:]) for ids in batch]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = torch.arange(offset, offset + width, device=self.device)[None].expand(
            len(rows), -1
        )
        inputs: dict[str, Any] = {"input_ids": input_ids, "position_ids": positions}
        ones = torch.ones((len(rows), offset), dtype=mask.dtype, device=self.device)
        if offset:
            cache = self._batch_cache(len(rows))
            inputs.update(attention_mask=torch.cat([ones, mask], dim=1), use_cache=True)
            inputs[self._cache_kw] = cache
        else:
            inputs.update(attention_mask=mask, use_cache=False)
        return inputs, mask, ones

    def _batch_cache(self, size: int) -> Any:
        """The prefix cache for a batch of ``size`` rows (:func:`expanded_cache`)."""
        return expanded_cache(self.prefix.cache, size)

    def _pool(
        self, hidden: torch.Tensor, mask: torch.Tensor, ones: torch.Tensor, layer: int
    ) -> torch.Tensor:
        if self.pooling == "last":
            return last_token_pool(hidden, mask).float()
        if ones.shape[1]:  # the cached prefix's tokens count in the mean too
            prefix = self.prefix.hidden[layer].expand(len(mask), -1, -1)
            hidden = torch.cat([prefix, hidden], dim=1)
            mask = torch.cat([ones, mask], dim=1)
        return mean_pool(hidden, mask)


def cache_keyword(model: nn.Module) -> str:
    """The name ``model.forward`` takes its KV cache by (``cache`` from transformers 5.x)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def expanded_cache(prefix: Any, size: int) -> Any:
    """A one-row KV cache served to a batch of ``size`` rows, never written.

    The one-row cache is copied (cheap) and its keys/values *expanded* to the batch,
    not repeated. Each layer's update then returns the prefix concatenated with the
    batch's new keys/values *without storing them*: the batch's cache is dropped
    after the pass, and keeping every layer's keys/values alive until then would
    only raise peak memory (hundreds of MB for a batch of long documents). Layers
    of another kind (which may update in place) get real copies instead.

    The cache and its layers are copied shallowly: the prefix's tensors are shared,
    never written. A deep copy of every layer's tensors cost ~3% of a one-query call.
    """
    cache = copy.copy(prefix)
    if not hasattr(cache, "layers"):
        return copy.deepcopy(prefix)  # an older Cache: nothing to share safely
    cache.layers = [copy.copy(layer) for layer in cache.layers]
    for i, layer in enumerate(cache.layers):
        keys = getattr(layer, "keys", None)
        if keys is None or not keys.numel():
            continue
        if _cat_update(layer):
            _read_only(
                layer,
                keys.expand(size, *keys.shape[1:]),
                layer.values.expand(size, *layer.values.shape[1:]),
            )
        else:
            cache.layers[i] = copy.deepcopy(prefix.layers[i])
            cache.layers[i].batch_repeat_interleave(size)
    return cache


def value_projection(model: nn.Module, block: int) -> nn.Module:
    """The attention output projection of a block (Llama/Gemma/Qwen ``self_attn.o_proj``).

    Its input is what contrastive prompting calls the contextualised value vectors.

    Raises:
        ValueError: If the block has none (GPT-2, OPT) or the index is out of range.
    """
    blocks = decoder_layers(model)
    if not 0 <= block < len(blocks):
        raise ValueError(f"contrastive block must be in 0..{len(blocks) - 1}, got {block}")
    proj = getattr(getattr(blocks[block], "self_attn", None), "o_proj", None)
    if proj is None:
        raise ValueError(
            "contrastive prompting needs blocks with self_attn.o_proj (Llama, Gemma, Qwen); "
            f"{type(model).__name__} has none"
        )
    return proj


def _steer_hook(last: torch.Tensor, subtract: torch.Tensor, alpha: float) -> Any:
    """An ``o_proj`` pre-hook: the last token's values become ``alpha * (own - aux)``."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        x = (args[0] if args else kwargs["input"]).clone()
        rows = torch.arange(len(x), device=x.device)
        x[rows, last] = alpha * (x[rows, last] - subtract.to(x.dtype))
        return ((x, *args[1:]), kwargs) if args else (args, {**kwargs, "input": x})

    return hook


def _grab_hook(last: torch.Tensor, got: list[torch.Tensor]) -> Any:
    """An ``o_proj`` pre-hook keeping the last token's input, then stopping the pass."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        x = args[0] if args else kwargs["input"]
        got.append(x[torch.arange(len(x), device=x.device), last].float())
        raise _EarlyExit

    return hook


def _prepend_hook(column: torch.Tensor, last: torch.Tensor) -> Any:
    """A block pre-hook writing each row's last real state over its placeholder."""

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0] if args else kwargs["hidden_states"]
        rows = torch.arange(len(hidden), device=hidden.device)
        hidden = hidden.clone()  # the captured hidden_states[i] must stay untouched
        hidden[rows, column] = hidden[rows, last]
        if args:
            return (hidden, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": hidden}

    return hook


def _cat_update(layer: Any) -> bool:
    """Whether a cache layer's ``update`` only concatenates (never writes in place)."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    return type(layer) in (DynamicLayer, DynamicSlidingWindowLayer)


def _read_only(layer: Any, keys: torch.Tensor, values: torch.Tensor) -> None:
    """Make a cache layer answer ``prefix + new`` keys/values without keeping them."""
    layer.keys, layer.values = keys, values

    def update(
        key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)

    layer.update = update
