"""Where pretrained files come from (the Hugging Face cache or a local folder), and the one-line
refusal when they are not there. Imports nothing of ours: the text data modules (tokenizers) and
the models (weights) both use it."""
from __future__ import annotations

import os
from pathlib import Path


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or Path(name).expanduser().exists()


def is_offline() -> bool:
    try:
        from huggingface_hub import constants

        if hasattr(constants, "is_offline_mode"):
            return bool(constants.is_offline_mode())
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")


def hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return os.path.join(os.environ.get("HF_HOME", "~/.cache/huggingface"), "hub")


def is_cached(name: str, filename: str = "config.json") -> bool:
    """Whether the Hugging Face cache holds ``filename`` of the model ``name``."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, filename), str)
    except Exception:  # not a valid repo id, or no huggingface_hub: not cached
        return False


def unavailable(key: str, name: str, error: BaseException) -> str:
    """One line: ``key=name`` could not be loaded, why, and how to get it."""
    if looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir():
            return f"{key}={name}: no such folder (a local model folder is one written by save_pretrained)"
        return (f"{key}={name}: the folder cannot be loaded as a Hugging Face model/tokenizer "
                f"({_first_line(error)}); it needs config.json, the weights and the tokenizer files written by "
                "save_pretrained")
    why = "downloading is off (HF_HUB_OFFLINE=1)" if is_offline() else f"loading it failed ({_first_line(error)})"
    return (f"{key}={name}: not in the Hugging Face cache ({hub_cache()}) and {why}; download it where there "
            f"is internet with `hf download {name}` (older clients: `huggingface-cli download {name}`) and copy "
            "the cache folder to this machine's HF_HOME (default ~/.cache/huggingface), or pass a local folder "
            "written by save_pretrained")


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + "...") if len(text) > 300 else text
