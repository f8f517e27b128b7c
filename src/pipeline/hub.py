"""Where pretrained files come from (the Hugging Face cache or a local folder), and the one-line
refusal when they are not there. Imports nothing of ours: the text data modules (tokenizers) and
the models (weights) both use it."""
from __future__ import annotations

import contextvars
import os
import socket
from pathlib import Path
from typing import Optional


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


def hub_unreachable(timeout: float = 5.0) -> Optional[str]:
    """Why the Hub's endpoint (``HF_ENDPOINT``, default huggingface.co) cannot be reached, or None when a connection
    opens (a model that is not cached is then downloaded) or goes through a proxy (which this does not try: the
    download will). Without this, a machine with no internet retried each file for about a minute before saying
    so. The name lookup and the connection together get ``timeout`` seconds."""
    import threading
    import urllib.request
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    if urllib.request.getproxies().get(endpoint.scheme or "https") and not urllib.request.proxy_bypass(host):
        return None
    outcome: list[Optional[str]] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{host} cannot be reached ({_first_line(error) or type(error).__name__})")

    attempt = threading.Thread(target=connect, name="hub-reachable", daemon=True)
    attempt.start()
    attempt.join(timeout)
    return outcome[0] if outcome else f"{host} did not answer within {timeout:g} s"


# off while an evaluation validates its config: its data is made by the source run's fitted state (a saved
# tokenizer), and only the model's files are loaded (pipeline.train.evaluate)
TOKENIZER_CHECKED = contextvars.ContextVar("pipeline_tokenizer_checked", default=True)


def check_at_hand(key: str, name: Optional[str], files: tuple[str, ...] = ("config.json",)) -> None:
    """Before anything runs: ``key=name`` is a local folder (with ``files[0]``, where given), or is in the Hugging
    Face cache (one of ``files``), or can be downloaded (downloads on, the Hub reachable); else ValueError with
    :func:`unavailable`'s line."""
    if not name:
        return
    name = str(name)
    if looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.is_dir() or (files and not (folder / files[0]).is_file()):
            raise ValueError(unavailable(key, name, FileNotFoundError(f"no {files[0] if files else 'folder'} in {folder}")))
        return
    if any(is_cached(name, filename) for filename in files or ("config.json",)):
        return
    if is_offline():
        raise ValueError(unavailable(key, name, FileNotFoundError(name)))
    why = hub_unreachable()
    if why is not None:
        raise ValueError(unavailable(key, name, ConnectionError(why), reason=why))


def unavailable(key: str, name: str, error: BaseException, reason: Optional[str] = None) -> str:
    """One line: ``key=name`` could not be loaded, why, and how to get it."""
    if looks_like_path(name):
        folder = Path(name).expanduser()
        if folder.is_file():  # tokenizer.json, the weights: the folder that holds them is what is read
            return (f"{key}={name}: a file, not a folder; name the folder that holds it ({key}={folder.parent}): a "
                    "model or tokenizer folder is one written by save_pretrained")
        if not folder.is_dir():
            return f"{key}={name}: no such folder (a local model folder is one written by save_pretrained)"
        return (f"{key}={name}: the folder cannot be loaded as a Hugging Face model/tokenizer "
                f"({_first_line(error)}); it needs config.json, the weights and the tokenizer files written by "
                "save_pretrained")
    why = reason or ("downloading is off (HF_HUB_OFFLINE=1)" if is_offline() else f"loading it failed ({_first_line(error)})")
    return (f"{key}={name}: not in the Hugging Face cache ({hub_cache()}) and {why}; download it where there "
            f"is internet with `hf download {name}` (older clients: `huggingface-cli download {name}`) and copy "
            "the cache folder to this machine's HF_HOME (default ~/.cache/huggingface), or pass a local folder "
            "written by save_pretrained")


def _first_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return (text[:300] + "...") if len(text) > 300 else text
