"""PyTorch/transformers engine: ``model.generate`` with a streamer that times every step."""

from __future__ import annotations

import time
from typing import Any, cast

from harness.agent import activity
from harness.backends import weights
from harness.backends.engine import Engine, RequestTiming, torch_build_info
from harness.backends.pytorch import SPEC
from harness.backends.pytorch.options import PytorchOptions
from harness.errors import EnvironmentProblem, RunFailure
from harness.results.reasons import FailureReason

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class _StepClock:
    """A transformers streamer that records when each decoding step's tokens arrive.

    ``generate`` calls ``put`` once with the prompt, then once per step with the new tokens of
    every sequence in the batch; moving them to the CPU waits for the device, so the
    timestamp is taken after the step really finished.
    """

    def __init__(self) -> None:
        self.times: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        value.cpu()
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.times.append(time.perf_counter())
        if len(self.times) == 1:
            activity.publish(activity.Activity.DECODE)  # prefill done: first tokens are out

    def end(self) -> None:
        """Generation finished."""


class PytorchEngine(Engine):
    """Hugging Face transformers on PyTorch, static batches, greedy or sampled decoding."""

    spec = SPEC
    model: Any = None
    tokenizer: Any = None

    def load(self, model_path: str) -> None:
        """Load tokenizer and model at the configured dtype and attention implementation."""
        try:
            import torch
            import transformers
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise EnvironmentProblem(f"torch/transformers are not installed: {e}") from e
        self._torch = torch
        exp = self.experiment
        opts = cast(PytorchOptions, exp.options)
        if exp.device == "cuda" and not torch.cuda.is_available():
            raise EnvironmentProblem("device cuda requested but torch sees no CUDA device")
        dtype = getattr(torch, _DTYPES[exp.precision])
        found = weights.find_model(model_path)
        self.refuse_unfit_model(found)
        model_dir = str(found)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            self.model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=dtype, attn_implementation=opts.attn_implementation
            )
        except OSError as e:
            raise RunFailure(f"model {model_path!r} (read from {model_dir}) cannot be loaded: {e}",
                             reason=FailureReason.ENGINE_START_FAILED) from e
        self.model.to(exp.device)  # type: ignore[arg-type]
        self.model.eval()
        if opts.torch_compile:
            self.model.forward = torch.compile(self.model.forward)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        self._versions = {"torch": torch.__version__, "transformers": transformers.__version__}

    def vocab(self) -> tuple[int, list[int]]:
        """Vocabulary size and special token ids."""
        size = min(len(self.tokenizer), self.model.config.vocab_size)
        return size, list(self.tokenizer.all_special_ids)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _generation_kwargs(self, max_new_tokens: int) -> dict[str, Any]:
        dec = self.experiment.decoding
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "min_new_tokens": max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if dec.temperature > 0:
            kwargs.update(do_sample=True, temperature=dec.temperature, top_p=dec.top_p)
            if dec.top_k > 0:
                kwargs["top_k"] = dec.top_k
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kwargs

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        """Run one static batch; every sequence produces exactly ``max_new_tokens`` tokens."""
        torch = self._torch
        padded = self.tokenizer.pad({"input_ids": prompts}, padding=True, return_tensors="pt")
        batch = {k: v.to(self.experiment.device) for k, v in padded.items()}
        clock = _StepClock()
        self.synchronize()
        start = time.perf_counter()
        activity.publish(activity.Activity.PREFILL)
        try:
            with torch.inference_mode():
                out = self.model.generate(
                    **batch, streamer=clock, **self._generation_kwargs(max_new_tokens)
                )
            self.synchronize()
        finally:
            activity.publish(activity.Activity.LOADED_IDLE)
        end = time.perf_counter()
        new_tokens = out.shape[1] - batch["input_ids"].shape[1]
        if new_tokens != max_new_tokens:
            raise RunFailure(
                f"generated {new_tokens} tokens per request, expected {max_new_tokens}",
                reason=FailureReason.TOKEN_COUNT_MISMATCH,
            )
        return [
            RequestTiming(
                input_tokens=len(p),
                output_tokens=new_tokens,
                start_s=start,
                end_s=end,
                token_times_s=list(clock.times),
            )
            for p in prompts
        ]

    def synchronize(self) -> None:
        """Wait for queued CUDA work."""
        if self.experiment.device == "cuda":
            self._torch.cuda.synchronize()

    def unload(self) -> None:
        """Drop the model and empty the CUDA cache."""
        self.model = None
        if self.experiment.device == "cuda":
            self._torch.cuda.empty_cache()

    def info(self) -> dict[str, Any]:
        """Engine versions and effective settings."""
        cfg = self.model.config if self.model is not None else None
        return {
            "engine": "transformers",
            "engine_version": self._versions["transformers"],
            **self._versions,
            "dtype": str(getattr(self.model, "dtype", "")),
            "attn_implementation": getattr(cfg, "_attn_implementation", None),
            "torch_threads": self._torch.get_num_threads(),
            "token_timing": "a streamer's put() per decoding step, after the step's tokens were "
            "copied to the CPU (which waits for the device)",
            "num_layers": getattr(cfg, "num_hidden_layers", None),
            "hidden_size": getattr(cfg, "hidden_size", None),
        }

    @classmethod
    def build_info(cls) -> dict[str, Any]:
        """Transformers and torch as installed, and the CUDA torch was built for."""
        import transformers

        return {"engine": "transformers", "engine_version": transformers.__version__,
                "transformers": transformers.__version__, **torch_build_info()}

    def memory_peak_bytes(self) -> int | None:
        """Peak bytes allocated by torch's CUDA allocator since the last reset."""
        if self.experiment.device != "cuda":
            return None
        return int(self._torch.cuda.max_memory_allocated())

    def reset_memory_peak(self) -> None:
        """Reset torch's CUDA peak-memory statistics."""
        if self.experiment.device == "cuda":
            self._torch.cuda.reset_peak_memory_stats()

    def device_uuids(self) -> list[str] | None:
        """UUIDs (torch.cuda device properties) of the GPUs holding the model's parameters."""
        if self.experiment.device != "cuda" or self.model is None:
            return None
        torch = self._torch
        indices = {p.device.index for p in self.model.parameters() if p.device.type == "cuda"}
        ordinals = sorted(torch.cuda.current_device() if i is None else i for i in indices)
        return [str(torch.cuda.get_device_properties(i).uuid) for i in ordinals]

    def parameter_counts(self) -> tuple[int, int]:
        """Total and embedding parameter counts."""
        total = sum(p.numel() for p in self.model.parameters())
        emb = self.model.get_input_embeddings().weight.numel()
        return int(total), int(emb)
