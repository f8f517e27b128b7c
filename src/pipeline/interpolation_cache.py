"""OmegaConf parses an interpolation string (``${paths.output_dir}/checkpoints``) with its ANTLR grammar every
time the value is read, ~0.3 ms each. Validating, logging and building a run reads a few hundred of them, and a
sweep does so for every trial with the same strings: ~60-80 ms of a trial on this project's machine. The parse
tree depends only on the string (and the grammar rule), and resolving reads it without changing it, so the
trees are kept here, keyed by the string, the rule and the lexer mode."""
from __future__ import annotations

import functools

_installed = False


def install(max_strings: int = 4096) -> None:
    """Route OmegaConf's parsing through a cache (idempotent)."""
    global _installed
    if _installed:
        return
    from omegaconf import _utils, base, grammar_parser

    parse = functools.lru_cache(maxsize=max_strings)(grammar_parser.parse)
    for module in (grammar_parser, base, _utils):
        if getattr(module, "parse", None) is not None:
            module.parse = parse
    _installed = True
