"""FLOPs: active parameters of a mixture of experts, the LM head per logits row, packed weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from harness.agent import compute
from harness.models import write_tiny_model

D, VOCAB, FFN, EXPERTS, PER_TOKEN = 8, 16, 12, 4, 2
CONFIG = {
    "hidden_size": D, "num_hidden_layers": 1, "vocab_size": VOCAB, "num_attention_heads": 2,
    "num_key_value_heads": 1, "intermediate_size": FFN, "num_local_experts": EXPERTS,
    "num_experts_per_tok": PER_TOKEN, "tie_word_embeddings": False,
}


def moe_tensors(dtype: type = np.float32) -> dict[str, np.ndarray]:
    """A one-layer Mixtral-shaped checkpoint (names as Hugging Face writes them)."""
    layer = "model.layers.0"
    t = {
        "model.embed_tokens.weight": (VOCAB, D), f"{layer}.self_attn.q_proj.weight": (8, D),
        f"{layer}.self_attn.k_proj.weight": (4, D), f"{layer}.self_attn.v_proj.weight": (4, D),
        f"{layer}.self_attn.o_proj.weight": (D, 8), f"{layer}.block_sparse_moe.gate.weight": (EXPERTS, D),
        f"{layer}.input_layernorm.weight": (D,), f"{layer}.post_attention_layernorm.weight": (D,),
        "model.norm.weight": (D,), "lm_head.weight": (VOCAB, D),
    }
    for e in range(EXPERTS):
        for w, shape in (("w1", (FFN, D)), ("w2", (D, FFN)), ("w3", (FFN, D))):
            t[f"{layer}.block_sparse_moe.experts.{e}.{w}.weight"] = shape
    return {name: np.zeros(shape, dtype=dtype) for name, shape in t.items()}


def write(folder: Path, tensors: dict[str, np.ndarray], config: dict) -> Path:
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_moe_counts_only_the_routed_experts_a_token_uses(tmp_path: Path) -> None:
    params = compute.checkpoint_parameters(write(tmp_path / "moe", moe_tensors(), CONFIG))
    assert params is not None and params.source == "safetensors headers"
    routed = EXPERTS * 3 * D * FFN
    body = params.total - params.embedding - params.lm_head
    assert params.active == body - routed + routed * PER_TOKEN // EXPERTS
    assert params.lm_head == VOCAB * D
    # the config formula gives the same counts
    assert compute.from_config(CONFIG) == compute.Parameters(
        params.total, params.embedding, params.lm_head, params.active, "config.json")


def test_packed_int4_weights_are_counted_from_the_config(tmp_path: Path) -> None:
    tensors = moe_tensors()
    packed = {}
    for name, array in tensors.items():
        if name.endswith("proj.weight") or ".experts." in name:
            stem = name.removesuffix(".weight")
            packed[f"{stem}.qweight"] = np.zeros((max(1, array.shape[1] // 8), array.shape[0]),
                                                 dtype=np.int32)  # 8 int4 values per int32
            packed[f"{stem}.scales"] = np.zeros((1, array.shape[0]), dtype=np.float16)
            packed[f"{stem}.qzeros"] = np.zeros((1, max(1, array.shape[0] // 8)), dtype=np.int32)
        else:
            packed[name] = array
    config = {**CONFIG, "quantization_config": {"quant_method": "gptq", "bits": 4}}
    params = compute.checkpoint_parameters(write(tmp_path / "int4", packed, config))
    assert params is not None and params.source == "config.json (the weights are packed)"
    dense = compute.from_config(CONFIG)
    assert dense is not None
    assert (params.total, params.active, params.lm_head) == (dense.total, dense.active,
                                                              dense.lm_head)
    headers = compute.from_tensors(
        {k: ("I32", list(v.shape)) for k, v in packed.items()}, config)
    assert headers.total < params.total  # what the headers alone would have said


def test_the_lm_head_is_counted_per_logits_row() -> None:
    params = compute.Parameters(total=0, embedding=0, lm_head=10, active=100, source="x")
    generated = compute.flops_estimate(params, 20, 5, 1, layers=None, attention_width=None,
                                       prompt_logits=False)
    assert generated == 2 * 100 * 25 + 2 * 10 * 5
    everywhere = compute.flops_estimate(params, 20, 5, 1, layers=None, attention_width=None,
                                        prompt_logits=True)
    assert everywhere == 2 * 100 * 25 + 2 * 10 * (20 + 5 - 1)


def test_a_dense_checkpoint_from_its_headers(tmp_path: Path) -> None:
    model = write_tiny_model(tmp_path / "tiny", layers=1, hidden_size=64)
    params = compute.checkpoint_parameters(model)
    config = json.loads((model / "config.json").read_text())
    assert params is not None and params.source == "safetensors headers"
    assert params.lm_head == params.embedding == config["vocab_size"] * config["hidden_size"]
    assert params.active == params.total - 2 * params.embedding  # untied head, no experts
    from_config = compute.from_config(config)
    assert from_config is not None
    assert (from_config.total, from_config.active) == (params.total, params.active)
