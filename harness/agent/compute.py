"""Analytic FLOPs of the measured window and memory peaks (docs/methodology.md, section 2.4).

Parameters come from the checkpoint: the safetensors headers where each stored element is one
parameter, the model's config.json where the weights are packed (int4/int8 quantised weights
store several parameters per element). Per token, only the active parameters count: for a
mixture of experts the routed experts' share is ``experts per token / experts``. The LM head
(vocab x hidden) is counted once per computed logits row: one per generated token, and one per
prompt token only for engines that compute prompt logits (``BackendSpec.prompt_logits``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.agent.metrics import known, ratio
from harness.agent.sensors.base import WindowReading
from harness.agent.window import Window
from harness.backends import weights
from harness.backends.engine import Engine
from harness.results.schema import Compute

FLOPS_FORMULA = (
    "2*N_active*(I+O) + 2*V*d*R + 2*L*d_attn*(I*ctx_in + O*ctx_out); N_active: parameters "
    "without embeddings and LM head, routed experts x experts_per_token/experts; R: logits rows "
    "({rows}); ctx_in = prompt/2, ctx_out = prompt + generated/2 per request (Kaplan et al. 2020, "
    "table 1; forward pass only); parameters from {source}"
)
_EXPERT = re.compile(r"\.experts\.")
_LM_HEAD = ("lm_head.weight", "embed_out.weight")
#: quantisation side tensors (scales, zero points, group indices) are not parameters
_SIDE = re.compile(r"(_scale|\.scales|qzeros|g_idx|_zero_point|_shape)$")
_PACKED_DTYPES = {"I32", "U32", "I64", "U8", "I8", "I16"}


@dataclass(frozen=True)
class Parameters:
    """Parameter counts behind the FLOPs estimate."""

    total: int
    embedding: int
    #: the LM head's parameters (vocab x hidden), whether tied to the embedding or not
    lm_head: int
    #: parameters of a token's forward pass besides embedding and LM head (experts: active ones)
    active: int
    source: str


def _moe(config: dict[str, Any]) -> tuple[int, int] | None:
    """(experts per token, routed experts) of a mixture-of-experts config, else None."""
    n = next((config[k] for k in ("num_local_experts", "num_experts", "n_routed_experts")
              if isinstance(config.get(k), int) and config[k] > 1), None)
    k = config.get("num_experts_per_tok")
    return (k, n) if n is not None and isinstance(k, int) and k > 0 else None


def from_tensors(tensors: dict[str, tuple[str, list[int]]], config: dict[str, Any]) -> Parameters:
    """Counts from unpacked safetensors headers (one element per parameter)."""
    total = embedding = head = routed = 0
    for name, (_, shape) in tensors.items():
        if _SIDE.search(name):
            continue
        count = 1
        for dim in shape:
            count *= dim
        total += count
        if name.endswith(weights.EMBEDDING_SUFFIXES):
            embedding += count
        elif name.endswith(_LM_HEAD):
            head += count
        elif _EXPERT.search(name):
            routed += count
    moe = _moe(config)
    body = total - embedding - head
    active = body - routed + (routed * moe[0] // moe[1] if moe else routed)
    return Parameters(total, embedding, head or embedding, active, "safetensors headers")


def from_config(config: dict[str, Any]) -> Parameters | None:
    """Counts from a decoder config (Llama family, Mixtral, Qwen-MoE, DeepSeek-style MoE)."""
    try:
        d, layers, vocab = config["hidden_size"], config["num_hidden_layers"], config["vocab_size"]
        heads = config["num_attention_heads"]
        kv = config.get("num_key_value_heads") or heads
        head_dim = config.get("head_dim") or d // heads
        ffn = config["intermediate_size"]
    except (KeyError, TypeError, ZeroDivisionError):
        return None
    attention = 2 * d * heads * head_dim + 2 * d * kv * head_dim
    moe = _moe(config)
    dense_layers, expert_layers = layers, 0
    routed_per_layer = active_per_layer = 0
    if moe is not None:
        expert_ffn = config.get("moe_intermediate_size") or ffn
        dense_layers = int(config.get("first_k_dense_replace") or 0)
        expert_layers = layers - dense_layers
        shared = 3 * d * int(config.get("shared_expert_intermediate_size") or 0)
        shared += 3 * d * expert_ffn * int(config.get("n_shared_experts") or 0)
        routed_per_layer = moe[1] * 3 * d * expert_ffn + shared + d * moe[1]
        active_per_layer = moe[0] * 3 * d * expert_ffn + shared + d * moe[1]
    norms = 2 * d * layers + d
    body_active = layers * attention + dense_layers * 3 * d * ffn + expert_layers * active_per_layer
    body = layers * attention + dense_layers * 3 * d * ffn + expert_layers * routed_per_layer
    tied = bool(config.get("tie_word_embeddings", True))
    embedding = vocab * d
    total = embedding + body + norms + (0 if tied else vocab * d)
    return Parameters(total, embedding, vocab * d, body_active + norms, "config.json")


def _packed(tensors: dict[str, tuple[str, list[int]]], config: dict[str, Any]) -> bool:
    """Whether the checkpoint stores quantised weights packed several to an element."""
    quant = config.get("quantization_config")
    if isinstance(quant, dict) and isinstance(quant.get("bits"), int) and quant["bits"] < 8:
        return True
    return any(dtype in _PACKED_DTYPES and not _SIDE.search(name)
               for name, (dtype, _) in tensors.items())


def checkpoint_parameters(model_dir: Path | None) -> Parameters | None:
    """Parameter counts of the checkpoint in ``model_dir`` (None when they cannot be known)."""
    if model_dir is None:
        return None
    config = weights.model_config(model_dir)
    try:
        tensors = weights.checkpoint_tensors(model_dir)
    except (OSError, ValueError):
        tensors = None
    if tensors and not _packed(tensors, config):
        return from_tensors(tensors, config)
    found = from_config(config)
    if found is not None and tensors:
        return Parameters(found.total, found.embedding, found.lm_head, found.active,
                          "config.json (the weights are packed)")
    return found


def flops_estimate(
    params: Parameters, input_tokens: int, output_tokens: int, requests: int,
    *, layers: int | None, attention_width: int | None, prompt_logits: bool,
) -> float:
    """Forward FLOPs over the window: active parameters, LM head rows, attention."""
    rows = output_tokens + (input_tokens - requests if prompt_logits else 0)
    flops = 2.0 * params.active * (input_tokens + output_tokens) + 2.0 * params.lm_head * rows
    if layers and attention_width and requests:
        per_req_in = input_tokens / requests
        per_req_out = output_tokens / requests
        # prompt tokens attend to on average half the prompt; generated tokens to the prompt
        # plus half of what was generated so far
        ctx_in = per_req_in / 2
        ctx_out = per_req_in + per_req_out / 2
        flops += 2.0 * layers * attention_width * (input_tokens * ctx_in + output_tokens * ctx_out)
    return flops


def peak_memory_used_bytes(readings: list[WindowReading], devices: list[str]) -> int | None:
    """Peak NVML used memory per device over the readings, summed over devices."""
    peaks = []
    for dev in devices:
        values = [v for r in readings for v in known(r.device_samples(dev), "memory_used_bytes")]
        if not values:
            return None
        peaks.append(int(max(values)))
    return sum(peaks) if peaks else None


def _engine_parameters(backend: Engine) -> Parameters | None:
    """Counts from the engine when the checkpoint cannot be read (dense, LM head unknown)."""
    counts = backend.parameter_counts()
    if counts is None:
        return None
    total, embedding = counts
    return Parameters(total, embedding, embedding, total - embedding, "the engine's modules")


def compute_figures(
    backend: Engine, window: Window, readings: list[WindowReading], devices: list[str],
    model_path: str,
) -> Compute:
    """FLOPs estimate from the parameter counts, and peak memory (allocator and NVML)."""
    compute = Compute(
        peak_memory_allocated_bytes=backend.memory_peak_bytes(),
        peak_memory_used_bytes=peak_memory_used_bytes(readings, devices),
    )
    model_dir = weights.local_model_dir(model_path)
    params = checkpoint_parameters(model_dir) or _engine_parameters(backend)
    if params is None:
        return compute
    config = weights.model_config(model_dir)
    info = backend.info()
    layers = config.get("num_hidden_layers") or info.get("num_layers")
    hidden = config.get("hidden_size") or info.get("hidden_size")
    heads, head_dim = config.get("num_attention_heads"), config.get("head_dim")
    width = heads * head_dim if isinstance(heads, int) and isinstance(head_dim, int) else hidden
    prompt_logits = backend.spec.prompt_logits
    compute.non_embedding_params = params.total - params.embedding
    compute.active_params = params.active
    compute.lm_head_params = params.lm_head
    compute.params_source = params.source
    compute.flops = flops_estimate(
        params, window.input_tokens, window.output_tokens, len(window.requests),
        layers=layers, attention_width=width, prompt_logits=prompt_logits,
    )
    compute.flops_per_s = ratio(compute.flops, window.window_s)
    compute.flops_formula = FLOPS_FORMULA.format(
        rows="one per prompt token and generated token" if prompt_logits
        else "one per generated token: prompt positions compute no logits",
        source=params.source,
    )
    return compute
