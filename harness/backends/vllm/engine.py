"""vLLM engine: the offline engine (``vllm.LLM``), one batch at a time, every token timed.

``LLM.generate`` only returns finished requests, so this engine adds the batch's requests to
the LLM's engine itself and steps it, asking for each step's new tokens (``DELTA`` outputs).
Every token gets the time at which the engine handed it to the agent: the moment a streaming
client would see it. Engine start (model load, compilation, KV-cache allocation) happens in
``load`` and is timed apart from the measured window.

The engine core runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``): by default vLLM
0.32 starts it in another process (``vllm/envs.py`` defaults the variable to 1;
``LLMEngine.from_engine_args`` then makes a ``SyncMPClient``), which keeps scheduling and
running the model while the client processes outputs, so a timestamp taken when ``step()``
returns is not when the tokens were made. In process (``InprocClient``), ``step()`` runs one
engine-core step (schedule, forward pass, sampling) and returns its tokens.
"""

from __future__ import annotations

import gc
import itertools
import os
import time
from collections.abc import Mapping
from typing import Any

from harness.agent import activity
from harness.backends import weights
from harness.backends.engine import Engine, RequestTiming, torch_build_info
from harness.backends.sampling import exact_length
from harness.backends.vllm import SPEC
from harness.backends.vllm.options import DTYPES, VllmOptions, quantization_method
from harness.config.experiment import Decoding, Experiment
from harness.errors import EnvironmentProblem, RunFailure
from harness.results.reasons import FailureReason

GIB = 1024**3
#: vLLM's switch for the engine core's own process (vllm/envs.py); "0" keeps it in this one
IN_PROCESS = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


def llm_kwargs(
    experiment: Experiment, model_path: str, config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Keyword arguments of ``vllm.LLM`` for this experiment (pure; no vLLM needed).

    ``config`` is the checkpoint's config.json (None: a 16-bit checkpoint); it decides the
    quantization method (``quantization_method``).
    """
    opts = experiment.options
    assert isinstance(opts, VllmOptions)
    dtype = DTYPES.get(experiment.precision) or opts.dtype or "auto"
    kwargs: dict[str, Any] = {
        "model": model_path,
        "dtype": dtype,
        "quantization": quantization_method(experiment, config or {}),
        "gpu_memory_utilization": opts.gpu_memory_utilization,
        "max_num_seqs": opts.max_num_seqs,
        "enforce_eager": opts.enforce_eager,
        "kv_cache_dtype": opts.kv_cache_dtype,
        "enable_prefix_caching": opts.enable_prefix_caching,
        "tensor_parallel_size": opts.tensor_parallel_size,
        "seed": experiment.workload.seed,
        "disable_log_stats": True,
    }
    optional = {
        "max_num_batched_tokens": opts.max_num_batched_tokens,
        "max_model_len": opts.max_model_len,
        "enable_chunked_prefill": opts.enable_chunked_prefill,
        "kv_cache_memory_bytes": (
            int(opts.kv_cache_space_gib * GIB) if opts.kv_cache_space_gib is not None else None
        ),
    }
    kwargs.update({k: v for k, v in optional.items() if v is not None})
    return kwargs


def sampling_kwargs(decoding: Decoding, max_new_tokens: int) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams``: exactly ``max_new_tokens``, EOS ignored."""
    return exact_length(decoding, max_new_tokens, {"temperature": 0.0})


class VllmEngine(Engine):
    """vLLM's offline engine on CUDA or CPU; prompts go in as token ids."""

    spec = SPEC

    def __init__(self, experiment: Experiment) -> None:
        super().__init__(experiment)
        self._llm: Any = None
        self._batches = itertools.count()
        self._engine_start_s: float | None = None
        self._kwargs: dict[str, Any] = {}
        self._config: dict[str, Any] = {}
        self._counts: tuple[int, int] | None = None
        self._quantization: str | None = None

    def load(self, model_path: str) -> None:
        """Start the engine: load weights, compile, allocate the KV cache."""
        # no usage reports (there is no network in a run anyway)
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        os.environ.setdefault("DO_NOT_TRACK", "1")
        os.environ.update(IN_PROCESS)  # read when the engine is made, so before vllm.LLM(...)
        try:
            import vllm
            from vllm.sampling_params import RequestOutputKind
        except ImportError as e:
            raise EnvironmentProblem(f"vLLM is not installed: {e}") from e
        self._vllm = vllm
        self._delta = RequestOutputKind.DELTA
        model_dir = weights.find_model(model_path)
        self.refuse_unfit_model(model_dir)
        self._config = weights.model_config(model_dir)
        self._kwargs = llm_kwargs(self.experiment, model_path, self._config)
        self._counts = weights.parameter_counts(model_dir)
        t0 = time.perf_counter()
        try:
            self._llm = vllm.LLM(**self._kwargs)
        except (OSError, ValueError, RuntimeError) as e:
            raise RunFailure(f"vLLM could not start the engine: {e}",
                             reason=FailureReason.ENGINE_START_FAILED) from e
        self._engine_start_s = time.perf_counter() - t0
        # what the engine settled on (a quantized checkpoint names its own method)
        self._quantization = getattr(getattr(self._llm, "model_config", None), "quantization", None)
        self._tokenizer = self._llm.get_tokenizer()

    def vocab(self) -> tuple[int, list[int]]:
        """Vocabulary size (tokenizer and model agree) and special token ids."""
        size = len(self._tokenizer)
        model_vocab = self._config.get("vocab_size")
        if isinstance(model_vocab, int):
            size = min(size, model_vocab)
        return size, list(getattr(self._tokenizer, "all_special_ids", []))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without special tokens."""
        return list(self._tokenizer.encode(text, add_special_tokens=False))

    def generate(self, prompts: list[list[int]], max_new_tokens: int) -> list[RequestTiming]:
        """Submit the batch at once and step the engine until every request is done."""
        params = self._vllm.SamplingParams(
            **sampling_kwargs(self.experiment.decoding, max_new_tokens), output_kind=self._delta
        )
        engine = self._llm.llm_engine
        batch = next(self._batches)
        ids = [f"b{batch}-r{i}" for i in range(len(prompts))]
        times: dict[str, list[float]] = {rid: [] for rid in ids}
        ends: dict[str, float] = {}
        start = time.perf_counter()
        activity.publish(activity.Activity.PREFILL)
        try:
            for rid, prompt in zip(ids, prompts, strict=True):
                engine.add_request(rid, {"prompt_token_ids": prompt}, params)
            while engine.has_unfinished_requests():
                outputs = engine.step()
                now = time.perf_counter()
                for out in outputs:
                    rid = self._our_id(out.request_id, times)
                    times[rid].extend([now] * len(out.outputs[0].token_ids))
                    if out.finished:
                        ends[rid] = now
                if any(times.values()):  # the step that produced first tokens ended prefill
                    activity.publish(activity.Activity.DECODE)
        finally:
            activity.publish(activity.Activity.LOADED_IDLE)
        timings = []
        for rid, prompt in zip(ids, prompts, strict=True):
            got = len(times[rid])
            if got != max_new_tokens or rid not in ends:
                raise RunFailure(
                    f"request {rid} generated {got} tokens, expected {max_new_tokens}",
                    reason=FailureReason.TOKEN_COUNT_MISMATCH,
                )
            timings.append(
                RequestTiming(
                    input_tokens=len(prompt),
                    output_tokens=got,
                    start_s=start,
                    end_s=ends[rid],
                    token_times_s=times[rid],
                )
            )
        return timings

    @staticmethod
    def _our_id(engine_id: str, ours: dict[str, list[float]]) -> str:
        """Map the engine's request id (it may append a suffix) back to the one given."""
        if engine_id in ours:
            return engine_id
        for rid in ours:
            if engine_id.startswith(rid + "-"):
                return rid
        raise RunFailure(f"vLLM returned an unknown request {engine_id!r}", reason=FailureReason.ENGINE_ERROR)

    def unload(self) -> None:
        """Shut the engine's processes down and drop it."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        try:
            if core is not None and hasattr(core, "shutdown"):
                core.shutdown()
        except Exception:  # noqa: BLE001 - best effort: the container ends anyway
            pass
        del llm
        gc.collect()

    def info(self) -> dict[str, Any]:
        """Versions of vLLM and torch, the engine arguments used, and how tokens were timed."""
        import torch

        settings = {k: v for k, v in self._kwargs.items() if k != "model"}
        return {
            "engine": "vllm",
            "engine_version": str(getattr(self._vllm, "__version__", "unknown")),
            "vllm": getattr(self._vllm, "__version__", None),
            "torch": torch.__version__,
            "device": self.experiment.device,
            "llm_kwargs": settings,
            "quantization": self._quantization,
            "engine_start_s": self._engine_start_s,
            "token_timing": "engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0): "
            "each step()'s tokens (DELTA outputs) timestamped when step() returns, after the "
            "step's forward pass and sampling",
            "max_num_batched_tokens": self.scheduler_token_budget(),
            "engine_core_client": type(getattr(getattr(self._llm, "llm_engine", None),
                                               "engine_core", None)).__name__,
            "num_layers": self._config.get("num_hidden_layers"),
            "hidden_size": self._config.get("hidden_size"),
        }

    @classmethod
    def build_info(cls) -> dict[str, Any]:
        """Which vLLM is installed (version, source commit), and the torch and CUDA it runs on."""
        import vllm

        version = str(getattr(vllm, "__version__", "unknown"))
        try:
            from vllm._version import __commit_id__ as commit
        except ImportError:
            commit = None
        return {"engine": "vllm", "engine_version": version, "vllm": version,
                "vllm_commit": commit, **torch_build_info()}

    def parameter_counts(self) -> tuple[int, int] | None:
        """Total and input-embedding parameters, from the checkpoint's safetensors headers."""
        return self._counts

    def scheduler_token_budget(self) -> int | None:
        """The tokens vLLM schedules per step (max_num_batched_tokens as the engine set it)."""
        try:
            return int(self._llm.llm_engine.vllm_config.scheduler_config.max_num_batched_tokens)
        except (AttributeError, TypeError, ValueError):
            return None

    def device_uuids(self) -> list[str] | None:
        """The GPU of the in-process worker (tensor parallel workers run elsewhere: unknown)."""
        opts = self.experiment.options
        if self.experiment.device != "cuda" or not isinstance(opts, VllmOptions) \
                or opts.tensor_parallel_size != 1 or self._llm is None:
            return None
        import torch

        return [str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)]
