"""Flatten a resolved config into MLflow params: dotted keys, redacted, length-limited."""
from __future__ import annotations

import shlex
from typing import Any, Iterator

from .redact import redact_override, redact_tree

MAX_PARAM_VALUE = 6000  # MLflow's limit for a param value (SQL stores); longer values are cut


def flatten(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list) and tree and any(isinstance(v, (dict, list)) for v in tree):
        for index, value in enumerate(tree):
            yield from flatten(value, f"{prefix}.{index}")
    else:
        yield prefix, tree


def config_params(resolved: dict, choices: dict[str, str], overrides: list[str]) -> dict[str, str]:
    """All params of a run: the flattened config, the chosen options, the overrides as given."""
    params = {key: _text(value) for key, value in flatten(redact_tree(resolved)) if key}
    for group in ("task", "data", "model", "optimizer", "scheduler", "trainer"):
        if choices.get(group):
            params[group] = str(choices[group])
    # quoted for a shell, as the command tag is: pasted back, '+tags.note=a b' is one override again
    params["overrides"] = _text(" ".join(shlex.quote(redact_override(o)) for o in overrides))
    return params


def _text(value: Any) -> str:
    text = "null" if value is None else str(value)
    return text if len(text) <= MAX_PARAM_VALUE else text[: MAX_PARAM_VALUE - 3] + "..."
