"""Parameter counts and shape figures read from a checkpoint's files, without loading it.

Engines that keep the model in worker processes do not hand their modules to the agent; the
safetensors headers and config.json give the same numbers.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

from harness.errors import RunFailure
from harness.results.reasons import FailureReason

#: names of input-embedding tensors across common architectures (suffix match)
EMBEDDING_SUFFIXES = ("embed_tokens.weight", "wte.weight", "word_embeddings.weight", "tok_embeddings.weight")
_MAX_HEADER_BYTES = 100 * 1024 * 1024


def local_model_dir(model: str) -> Path | None:
    """The folder of a model: the path itself, or its snapshot in the local Hugging Face cache."""
    path = Path(model)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached, not a hub id, or no huggingface_hub
        return None


def hub_cache_dir() -> Path:
    """Where the Hugging Face hub cache is looked up ($HF_HUB_CACHE, $HF_HOME/hub, default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(home) / "hub"


#: files that hold a checkpoint's weights (or say where they are: the sharded index files)
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.gguf", "*.index.json")


def model_folder_problem(folder: Path) -> str | None:
    """Why a folder does not look like a model (config.json and weights), or None if it does."""
    if not folder.is_dir():
        return f"{folder} is a file, not a model folder"
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json, so it does not look like a model folder"
    if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        return (f"{folder} has config.json but no weights ({', '.join(WEIGHT_PATTERNS)}), so it "
                "does not look like a model folder")
    return None


def cached_snapshots(cache: Path, model: str) -> list[Path]:
    """The snapshots of a hub id in a Hugging Face cache folder (HF_HOME, or its hub/ folder)."""
    slug = "models--" + model.replace("/", "--")
    found: list[Path] = []
    for root in (cache / "hub", cache):
        snapshots = root / slug / "snapshots"
        if snapshots.is_dir():
            found += sorted(p for p in snapshots.iterdir() if p.is_dir())
    return found


def find_model(model: str) -> Path:
    """The model's folder; RunFailure(model_not_found) saying where it looked when absent.

    Runs are offline by design, so a model that is neither a folder nor in the local hub cache
    is reported as not found, never as a network problem.
    """
    found = local_model_dir(model)
    if found is not None:
        return found
    path = Path(model)
    if path.is_absolute() or model.startswith((".", "~")) or path.exists():
        where = f"the folder {path.resolve()} does not exist or is not a folder"
    else:
        slug = "models--" + model.replace("/", "--")
        where = (f"it is not a folder, and the Hugging Face cache {hub_cache_dir()} has no "
                 f"snapshot of it ({slug}/snapshots/...)")
    raise RunFailure(
        f"model {model!r} not found: {where}. Runs are offline: put the model in a folder "
        "named by the study (mounted read-only) or in the host's Hugging Face cache",
        reason=FailureReason.MODEL_NOT_FOUND,
    )


def safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """Tensor name -> (dtype, shape) from one .safetensors file's header."""
    with path.open("rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        if size > _MAX_HEADER_BYTES:
            raise ValueError(f"{path}: safetensors header of {size} bytes is implausible")
        header = json.loads(fh.read(size))
    return {k: (str(v["dtype"]), list(v["shape"])) for k, v in header.items() if k != "__metadata__"}


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from one .safetensors file's header."""
    return {k: shape for k, (_, shape) in safetensors_header(path).items()}


def checkpoint_tensors(model_dir: Path) -> dict[str, tuple[str, list[int]]] | None:
    """Tensor name -> (dtype, shape) over every .safetensors file of a checkpoint (None: none)."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    found: dict[str, tuple[str, list[int]]] = {}
    for file in files:
        found.update(safetensors_header(file))
    return found


def parameter_counts(model_dir: Path) -> tuple[int, int] | None:
    """Total and input-embedding parameter counts from the safetensors files, if any."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        return None
    total = embedding = 0
    for file in files:
        for name, shape in safetensors_shapes(file).items():
            count = 1
            for dim in shape:
                count *= dim
            total += count
            if name.endswith(EMBEDDING_SUFFIXES):
                embedding += count
    return total, embedding


def model_config(model_dir: Path | None) -> dict[str, Any]:
    """The model's config.json as a dict ({} when missing or unreadable)."""
    if model_dir is None:
        return {}
    try:
        data = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


#: config.json keys that hold a mixture-of-experts model's expert count (Jamba, DBRX, DeepSeek,
#: Mixtral: the keys engines read, e.g. ModelArchConfigConvertor.get_num_experts)
EXPERT_COUNT_KEYS = ("num_experts", "moe_num_experts", "n_routed_experts", "num_local_experts")


def num_experts(config: dict[str, Any]) -> int:
    """Experts per MoE layer named by a config.json (0 for a dense model)."""
    for part in (config, config.get("text_config")):
        if not isinstance(part, dict):
            continue
        for key in EXPERT_COUNT_KEYS:
            value = part.get(key)
            if isinstance(value, list):
                value = value[0] if value else 0
            if isinstance(value, int) and value > 0:
                return value
        blocks = part.get("block_configs")
        if isinstance(blocks, list):
            moe = [b.get("n_routed_experts", 0) for b in blocks
                   if isinstance(b, dict) and b.get("block_type") == "moe"]
            if moe and max(moe) > 0:
                return int(max(moe))
    return 0
