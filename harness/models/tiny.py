"""A tiny random-weight Llama model, written offline without torch or transformers.

The files follow the Hugging Face layout (``config.json``, ``model.safetensors``, a byte-level
BPE ``tokenizer.json``), so ``transformers.AutoModelForCausalLM.from_pretrained(path)`` and
every engine of harness.backends load the folder. Tests and the CPU demo use it where no real
model can be fetched.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from harness.errors import UserInputError

PAD_TOKEN = "<pad>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN)  # ids 0, 1, 2 as in Llama's config
DEFAULT_VOCAB_TARGET = 768
_INIT_STD = 0.02
_MIN_VOCAB = 256 + len(SPECIAL_TOKENS)  # the byte alphabet plus the special tokens

CORPUS = (
    "The quick brown fox jumps over the lazy dog.",
    "A measurement is only as good as the instrument and the protocol behind it.",
    "Energy is power integrated over time, and it is measured in joules.",
    "Large language models generate text one token at a time.",
    "The batch size changes how many requests share each forward pass.",
    "Researchers compare inference engines on the same model and the same prompts.",
    "A graphics processor draws more power when its clocks run faster.",
    "Latency is the time between sending a request and receiving the answer.",
    "Throughput counts how many tokens are produced every second.",
    "The river ran quietly through the valley under a grey autumn sky.",
    "She opened the window and listened to the rain falling on the roof.",
    "Every morning the baker lit the oven before the sun came up.",
    "The library kept old maps of the city in a drawer near the door.",
    "Children played football in the park until the lights came on.",
    "He wrote a short letter to his grandmother and posted it on Monday.",
    "The train to the coast leaves at nine and arrives before noon.",
    "Mountains in the north are covered with snow for most of the year.",
    "A good experiment changes one thing and keeps everything else fixed.",
    "Repeat each measurement several times and report the spread of the results.",
    "The reviewer asked for error bars and the raw data behind every figure.",
    "Precision describes how many bits are used to store each number.",
    "Quantisation stores weights with fewer bits to save memory and energy.",
    "The cache keeps keys and values so that earlier tokens are not recomputed.",
    "Our team met on Thursday to plan the next round of experiments.",
    "The garden was full of roses, tulips and tall yellow sunflowers.",
    "Coffee tastes better when the beans are ground just before brewing.",
    "The ship sailed across the ocean for twelve days without seeing land.",
    "Please write a short story about a robot who learns to paint.",
    "Explain in simple words why the sky appears blue during the day.",
    "Summarise the main points of the article in three sentences.",
    "Translate the following sentence into French and then into German.",
    "What is the capital of France, and how many people live there?",
    "List five fruits that are red and two that are green.",
    "The meeting was moved from the small room to the large hall.",
    "Numbers like 1, 2, 3, 10, 42 and 2048 appear in many prompts.",
    "Temperature, clocks and memory are recorded with every power sample.",
    "The old clock in the hall struck twelve as the guests arrived.",
    "Students read the chapter carefully and answered the questions at the end.",
    "A cold wind blew from the sea and the fishermen pulled their boats ashore.",
    "The museum opens at ten and closes at six, except on Sundays.",
    "Good software is tested, documented and easy to run again.",
    "The container starts, measures one configuration, writes its result and exits.",
)


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise RuntimeError(f"the tokenizer lost its special token {token!r}")
    return int(token_id)


def train_tokenizer(vocab_size: int = DEFAULT_VOCAB_TARGET) -> Tokenizer:
    """Train a byte-level BPE tokenizer with pad/bos/eos tokens on the embedded corpus."""
    if vocab_size < _MIN_VOCAB:
        raise UserInputError(f"vocab_size must be at least {_MIN_VOCAB}, got {vocab_size}")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    bos_id = _token_id(tokenizer, BOS_TOKEN)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B:1",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    return tokenizer


def llama_weights(
    *,
    layers: int,
    hidden_size: int,
    heads: int,
    kv_heads: int,
    intermediate_size: int,
    vocab_size: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """Random float32 weights named and shaped as in Hugging Face's ``LlamaForCausalLM``."""
    rng = np.random.default_rng(seed)
    head_dim = hidden_size // heads

    def normal(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) * _INIT_STD).astype(np.float32)

    def ones(size: int) -> np.ndarray:
        return np.ones(size, dtype=np.float32)

    weights = {"model.embed_tokens.weight": normal(vocab_size, hidden_size)}
    for i in range(layers):
        p = f"model.layers.{i}"
        weights |= {
            f"{p}.self_attn.q_proj.weight": normal(heads * head_dim, hidden_size),
            f"{p}.self_attn.k_proj.weight": normal(kv_heads * head_dim, hidden_size),
            f"{p}.self_attn.v_proj.weight": normal(kv_heads * head_dim, hidden_size),
            f"{p}.self_attn.o_proj.weight": normal(hidden_size, heads * head_dim),
            f"{p}.mlp.gate_proj.weight": normal(intermediate_size, hidden_size),
            f"{p}.mlp.up_proj.weight": normal(intermediate_size, hidden_size),
            f"{p}.mlp.down_proj.weight": normal(hidden_size, intermediate_size),
            f"{p}.input_layernorm.weight": ones(hidden_size),
            f"{p}.post_attention_layernorm.weight": ones(hidden_size),
        }
    weights["model.norm.weight"] = ones(hidden_size)
    weights["lm_head.weight"] = normal(vocab_size, hidden_size)
    return weights


def _llama_config(
    *,
    layers: int,
    hidden_size: int,
    heads: int,
    kv_heads: int,
    intermediate_size: int,
    vocab_size: int,
    max_positions: int,
    token_ids: dict[str, int],
) -> dict[str, Any]:
    rope_theta = 10000.0
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": token_ids[BOS_TOKEN],
        "eos_token_id": token_ids[EOS_TOKEN],
        "pad_token_id": token_ids[PAD_TOKEN],
        "head_dim": hidden_size // heads,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "initializer_range": _INIT_STD,
        "intermediate_size": intermediate_size,
        "max_position_embeddings": max_positions,
        "mlp_bias": False,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-6,
        # transformers 5 reads rope_parameters; 4.x (in some vendor images) reads rope_theta.
        "rope_parameters": {"rope_type": "default", "rope_theta": rope_theta},
        "rope_theta": rope_theta,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": vocab_size,
    }


def _check_shape(*, hidden_size: int, heads: int, kv_heads: int, layers: int) -> None:
    problems = []
    if layers < 1:
        problems.append(f"layers must be >= 1, got {layers}")
    if heads < 1 or hidden_size % heads:
        problems.append(f"hidden_size {hidden_size} is not divisible by heads {heads}")
    if kv_heads < 1 or heads % kv_heads:
        problems.append(f"heads {heads} is not divisible by kv_heads {kv_heads}")
    if problems:
        raise UserInputError("invalid tiny model shape", problems=problems)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_tiny_model(
    path: Path,
    *,
    layers: int = 2,
    hidden_size: int = 256,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate_size: int = 512,
    vocab_size: int | None = None,
    max_positions: int = 2048,
    seed: int = 0,
) -> Path:
    """Write a random-weight Llama model with its tokenizer to ``path`` and return the path.

    ``vocab_size`` is the tokenizer's training target (default 768); the config's vocabulary
    is the size the tokenizer reached, which the small corpus may keep below the target.
    """
    _check_shape(hidden_size=hidden_size, heads=heads, kv_heads=kv_heads, layers=layers)
    tokenizer = train_tokenizer(vocab_size or DEFAULT_VOCAB_TARGET)
    vocab = tokenizer.get_vocab_size(with_added_tokens=True)
    token_ids = {t: _token_id(tokenizer, t) for t in SPECIAL_TOKENS}
    shape = {"layers": layers, "hidden_size": hidden_size, "heads": heads, "kv_heads": kv_heads,
             "intermediate_size": intermediate_size, "vocab_size": vocab}
    config = _llama_config(**shape, max_positions=max_positions, token_ids=token_ids)
    weights = llama_weights(**shape, seed=seed)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write next to the target and move the files in, so a half-written model never appears.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        staging = Path(tmp)
        _write_json(staging / "config.json", config)
        _write_json(
            staging / "generation_config.json",
            {
                "bos_token_id": token_ids[BOS_TOKEN],
                "eos_token_id": token_ids[EOS_TOKEN],
                "pad_token_id": token_ids[PAD_TOKEN],
                "do_sample": False,
            },
        )
        save_file(weights, str(staging / "model.safetensors"), metadata={"format": "pt"})
        tokenizer.save(str(staging / "tokenizer.json"))
        _write_json(
            staging / "tokenizer_config.json",
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": BOS_TOKEN,
                "eos_token": EOS_TOKEN,
                "pad_token": PAD_TOKEN,
                "model_max_length": max_positions,
                "padding_side": "left",
                "clean_up_tokenization_spaces": False,
            },
        )
        _write_json(
            staging / "special_tokens_map.json",
            {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN},
        )
        path.mkdir(exist_ok=True)
        for item in staging.iterdir():
            item.chmod(0o644)  # readable by the container user, whoever wrote the files
            item.replace(path / item.name)
    return path
