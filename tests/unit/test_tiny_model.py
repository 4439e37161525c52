import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UserInputError
from harness.models import write_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def test_writes_hf_layout(tiny_model: Path) -> None:
    names = {p.name for p in tiny_model.iterdir()}
    assert names == {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    }
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["head_dim"] == 64
    assert config["tie_word_embeddings"] is False
    assert 512 <= config["vocab_size"] <= 1000


def test_vocab_matches_tokenizer(tiny_model: Path) -> None:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_model / "tokenizer.json"))
    config = json.loads((tiny_model / "config.json").read_text())
    assert tokenizer.get_vocab_size(with_added_tokens=True) == config["vocab_size"]
    assert tokenizer.token_to_id("<s>") == config["bos_token_id"]
    assert tokenizer.token_to_id("</s>") == config["eos_token_id"]
    assert tokenizer.token_to_id("<pad>") == config["pad_token_id"]


def test_same_seed_same_files(tiny_model: Path, tmp_path: Path) -> None:
    again = write_tiny_model(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model / name).read_bytes(), name


def test_rewrite_in_place(tmp_path: Path) -> None:
    path = write_tiny_model(tmp_path / "m", seed=1)
    first = (path / "model.safetensors").read_bytes()
    write_tiny_model(path, seed=2)
    assert (path / "model.safetensors").read_bytes() != first
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left behind


def test_rejects_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(UserInputError, match="divisible"):
        write_tiny_model(tmp_path / "bad", hidden_size=250, heads=4)
    assert not (tmp_path / "bad").exists()


def test_writer_imports_no_torch() -> None:
    code = (
        "import sys, harness.models.tiny; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_loads_and_generates_with_transformers(tiny_model: Path) -> None:
    import torch  # the dev venv has the pytorch extra (make setup)
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    batch = tokenizer(
        ["The quick brown fox", "Energy is power integrated over time"],
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        logits = model(**batch).logits
        out = model.generate(**batch, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    assert torch.isfinite(logits).all()
    assert out.shape == (2, batch["input_ids"].shape[1] + 16)
    assert tokenizer.decode(tokenizer("The river ran").input_ids, skip_special_tokens=True) == (
        "The river ran"
    )
