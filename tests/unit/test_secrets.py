"""The one secrets policy (harness.secrets): names, values, text and JSON redaction, run time."""

import json
from pathlib import Path

import pytest

from harness.secrets import (
    REDACTED,
    Scrubber,
    forwarded_env,
    is_secret_name,
    redact_json,
    redact_text,
    secret_values,
)

HF = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
GITHUB = "ghp_" + "A1b2C3d4E5" * 4
VALUE = "s3cr3t-value-0123"


@pytest.mark.parametrize("name", [
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "WANDB_KEY", "SSH_KEY",
    "MY_PRIVATE_KEY", "DB_PASSWORD", "MYSQL_PASSWD", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
    "OPENAI_API_KEY", "AWS_ACCESS_KEY_ID", "GOOGLE_APPLICATION_CREDENTIALS", "CLIENT_SECRET_ID",
    "apiKey", "api_key", "access_token", "accessToken", "hf-token", "hf_token", "wandb_key",
    "private_key", "db_password", "client-secret", "Authorization", "token", "--hf-token",
])
def test_secret_names(name: str):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", [
    # result fields: data that says "token" or "key"
    "token_timing", "output_tokens", "input_tokens", "j_per_output_token", "max_tokens",
    "tokens_per_s", "prompts_sha256", "engine_key", "kv_cache_dtype", "tokenizer", "eos_token",
    "pad_token", "time_to_first_token", "max_num_batched_tokens", "keyring", "sort_key",
    # environment variables that are not credentials
    "TOKENIZERS_PARALLELISM", "HF_TOKEN_PATH", "PWD", "HF_HUB_OFFLINE", "KEYBOARD_LAYOUT",
    "", "_",
])
def test_data_names_are_not_secret(name: str):
    assert not is_secret_name(name)


@pytest.mark.parametrize(("text", "kept", "what"), [
    (f"HF_TOKEN={HF}", "HF_TOKEN=", "HF_TOKEN"),
    (f"WANDB_KEY: {VALUE}", "WANDB_KEY: ", "WANDB_KEY"),
    (f"export SSH_KEY='{VALUE}'", "export SSH_KEY='", "SSH_KEY"),
    (f'{{"apiKey": "{VALUE}"}}', '{"apiKey": "', "apiKey"),
    (f"curl 'https://x/y?access_token={VALUE}&n=1'", "?access_token=", "access_token"),
    (f"loaded {HF} from the cache", "loaded hf_", "hf_ token"),
    (f"Authorization: Bearer {VALUE}", "Authorization: Bearer ", "bearer token"),
    (f"push with {GITHUB}", "push with ", "GitHub token"),
    ("key sk-proj-0123456789abcdefSECRET used", "key ", "sk- key"),
    ("id AKIAIOSFODNN7EXAMPLE set", "id ", "AWS access key id"),
    (f"origin https://me:{VALUE}@github.com/x.git", "https://me:", "URL password"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY-----",
     "", "private key block"),
])
def test_secrets_in_text_are_redacted(text: str, kept: str, what: str):
    new, found = redact_text(text)
    assert [f.what for f in found] == [what]
    assert REDACTED in new and kept in new
    for secret in (HF, GITHUB, VALUE, "sk-proj-0123456789abcdefSECRET", "AKIAIOSFODNN7EXAMPLE",
                   "b3Blbn"):
        assert secret not in new
    assert redact_text(new) == (new, [])  # redacting twice changes nothing


@pytest.mark.parametrize("text", [
    '"token_timing": "engine step outputs (DELTA), timestamped when handed to the agent"',
    '"engine_key": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"',
    '"tokenizer": "models/tiny", "kv_cache_dtype": "auto", "eos_token": "</s>"',
    "TOKENIZERS_PARALLELISM=false HF_TOKEN_PATH=/root/.cache/huggingface/token",
    "max_tokens=8 tokens_per_s=12.5 j_per_output_token=0.25",
    "vLLM server at http://localhost:8000/v1 answered",
    "first token: 0.12 s; a bearer",
])
def test_data_in_text_is_left_alone(text: str):
    assert redact_text(text) == (text, [])


def test_lines_are_counted_for_each_finding():
    text = f"start\nHF_TOKEN={HF}\n-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE " \
           f"KEY-----\nDB_PASSWORD={VALUE}\n"
    _, found = redact_text(text)
    assert [(f.line, f.what) for f in found] == [
        (2, "HF_TOKEN"), (3, "private key block"), (6, "DB_PASSWORD")]


def test_known_values_are_redacted_wherever_they_stand():
    new, found = redact_text(f"a {VALUE} b {VALUE}", known=[VALUE, "short"])
    assert new == f"a {REDACTED} b {REDACTED}"
    assert [f.what for f in found] == ["a secret variable's value"] * 2


def test_a_result_keeps_its_data_and_loses_its_secrets():
    """Issue 16 item 7: a vLLM result's token_timing description is data, not a secret."""
    result = {
        "backend_info": {
            "token_timing": "engine step outputs (DELTA), timestamped when handed to the agent",
            "engine_key": "9f86d081884c7d659a2feaa0c55ad015",
            "kv_cache_dtype": "auto", "tokenizer": "models/tiny",
        },
        "tokens": {"input_tokens": 128, "output_tokens": 64, "max_tokens": 8},
        "energy": {"j_per_output_token": 0.25}, "throughput": {"tokens_per_s": 9.5},
        "workload": {"prompts_sha256": "ab" * 32},
        "environment": {"env": {"HF_TOKEN": HF, "WANDB_KEY": VALUE, "PATH": "/usr/bin"},
                        "argv": ["serve", "--hf-token", HF]},
    }
    new, fields = redact_json(result)
    assert fields == ["environment.env.HF_TOKEN", "environment.env.WANDB_KEY",
                      "environment.argv[2]: hf_ token"]
    assert new["backend_info"] == result["backend_info"]
    assert {k: new[k] for k in ("tokens", "energy", "throughput", "workload")} == \
           {k: result[k] for k in ("tokens", "energy", "throughput", "workload")}
    assert new["environment"]["env"] == {"HF_TOKEN": REDACTED, "WANDB_KEY": REDACTED,
                                         "PATH": "/usr/bin"}
    assert HF not in json.dumps(new) and VALUE not in json.dumps(new)
    assert redact_json(new) == (new, [])


# -- run time ----------------------------------------------------------------------------------


def test_the_run_time_scrubber_follows_the_same_names():
    env = {"HF_TOKEN": HF, "WANDB_KEY": VALUE, "SSH_KEY": "ssh-" + VALUE,
           "TOKENIZERS_PARALLELISM": "false-but-long", "HF_TOKEN_PATH": "/root/.cache/hf/token",
           "HOME": "/root", "API_KEY": "short"}
    assert forwarded_env(env) == {"HF_TOKEN": HF}
    assert set(secret_values(env)) == {HF, VALUE, "ssh-" + VALUE}
    scrub = Scrubber.from_environ(env)
    assert scrub.text(f"x {VALUE} /root/.cache/hf/token") == f"x {REDACTED} /root/.cache/hf/token"


def test_the_scrubber_rewrites_run_files(tmp_path: Path):
    (tmp_path / "container.log").write_text(f"WANDB_KEY is {VALUE}\n")
    (tmp_path / "result.json").write_text('{"token_timing": "engine step outputs"}\n')
    assert Scrubber([VALUE]).run_dir(tmp_path) == ["container.log"]
    assert (tmp_path / "container.log").read_text() == f"WANDB_KEY is {REDACTED}\n"
    assert (tmp_path / "result.json").read_text() == '{"token_timing": "engine step outputs"}\n'
