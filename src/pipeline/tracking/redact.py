"""Secrets never reach the tracking store: credentials in URLs and values of keys that look
like credentials are replaced before anything is logged."""
from __future__ import annotations

import functools
import os
import re
from typing import Any

REDACTED = "***"
# ... and a personal access token kept as *_PAT (GH_PAT, GITHUB_PAT)
SECRET_KEY_PATTERN = re.compile(r"(password|passwd|token(?!i[sz]er)|secret|api[_-]?key|access[_-]?key|private[_-]?key|credential|(^|[._-])key$|(^|[._-])pat$)", re.IGNORECASE)
# tokens recognisable by their own shape, whatever they are kept under: GitHub's (ghp_..., github_pat_...) and Hugging
# Face's (hf_...)
# (also after an underscore: mytok_ghp_... was kept, \b sees no word boundary there)
TOKEN_VALUE_PATTERN = re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"
                                 r"|hf_[A-Za-z0-9]{30,})(?![A-Za-z0-9])")
# scheme://user:password@host -> scheme://user:***@host
# (also scheme:/user:password@host: a URL given as a file path, whose // the path joined)
URL_PASSWORD_PATTERN = re.compile(r"(?P<prefix>[a-zA-Z][a-zA-Z0-9+.-]*:/{1,2}[^/:@\s]+:)(?P<password>[^@\s]+)(?P<at>@)")


@functools.lru_cache(maxsize=8192)  # the same keys come back for every run and trial
def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_PATTERN.search(key.rsplit(".", 1)[-1])) or bool(SECRET_KEY_PATTERN.search(key))


# a credential kept in the environment is masked wherever its value shows up (an ${oc.env:...}
# interpolation may copy it into any key); shorter or all-digit values would mask ordinary numbers
MIN_SECRET_LENGTH = 6


def secret_environment_values() -> tuple[str, ...]:
    # looked up for every text redacted (~50 per trial of a sweep): worked out again only when the environment changed
    return _secret_values(tuple(os.environ.items()))


@functools.lru_cache(maxsize=4)
def _secret_values(environment: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    values = {value for name, value in environment
              if is_secret_key(name) and len(value) >= MIN_SECRET_LENGTH and not value.isdigit()}
    return tuple(sorted(values, key=len, reverse=True))  # longest first: a value may contain another


def redact_text(text: str) -> str:
    text = URL_PASSWORD_PATTERN.sub(lambda m: f"{m.group('prefix')}{REDACTED}{m.group('at')}", text)
    if "_" in text:
        text = TOKEN_VALUE_PATTERN.sub(REDACTED, text)
    for value in secret_environment_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_override(override: str) -> str:
    """A command-line override ``key=value``: the value is masked when the key looks like a credential."""
    key, equals, value = override.partition("=")
    if equals and is_secret_key(key.lstrip("+~")) and value:
        return f"{key}={REDACTED}"
    return redact_text(override)


def redact_value(key: str, value: Any) -> Any:
    if value is None:
        return value
    if is_secret_key(key) and value not in ("", None):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_tree(tree: Any, prefix: str = "") -> Any:
    """Redact a nested dict/list structure (e.g. a resolved config) key by key."""
    if isinstance(tree, dict):
        return {k: redact_tree(v, f"{prefix}.{k}" if prefix else str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [redact_tree(v, prefix) for v in tree]
    return redact_value(prefix, tree)


# ``key=value`` in an override (``+tags.api_token=...``, Hydra's override_dirname ``a=1,b=2``) and ``key: value`` in YAML
_OVERRIDE = re.compile(r"(?P<key>[+~]{0,2}[A-Za-z_][\w.\-]*)=(?P<value>[^,\s'\"\]]+)")
_YAML_ENTRY = re.compile(r"^(?P<head>\s*(?P<key>[A-Za-z_][\w.\-]*): )(?P<value>\S.*)$", re.MULTILINE)
_NOT_A_VALUE = ("null", "''", '""', "{}", "[]", REDACTED, f"'{REDACTED}'")


def redact_yaml_text(text: str) -> str:
    """The text of a YAML file with its secrets masked as the store masks them: values of keys that look like
    credentials (in mappings and in ``key=value`` overrides), URL passwords, credentials from the environment.
    Interpolations (``${oc.env:TOKEN}``) hold no secret and stay."""
    def entry(match: re.Match) -> str:
        value = match.group("value")
        if is_secret_key(match.group("key")) and value not in _NOT_A_VALUE and not value.startswith("${"):
            return f"{match.group('head')}'{REDACTED}'"  # quoted: a bare * starts a YAML alias
        return match.group(0)

    def override(match: re.Match) -> str:
        key, value = match.group("key"), match.group("value")
        if is_secret_key(key.lstrip("+~")) and not value.startswith("${"):
            return f"{key}={REDACTED}"
        return match.group(0)

    return redact_text(_OVERRIDE.sub(override, _YAML_ENTRY.sub(entry, text)))


# a ``key: value``, ``key = value``, ``key=value`` or ``"key": "value"`` anywhere on a line of a diff (YAML, Python,
# JSON, .env files, comments, a removed line's ``-key: value``, ``--password=...``): the key (quoted or not) and the
# value (an interpolation, a quoted string or one bare word)
_DIFF_ENTRY = re.compile(
    r"""(?<![\w.])(?P<head>(?P<quote>["']?)(?P<key>[+~\-]*[A-Za-z_][\w.\-]*)(?P=quote)[ \t]*"""
    r"""(?:=(?!=)|:(?=[\s"']))[ \t]*)(?P<value>\$\{[^}\n]*\}|"(?:[^"\\\n]|\\.)*"|'[^'\n]*'"""
    r"""|(?:\$\{[^}\n]*\}|[^\s,;(){}\[\]"'$]|\$(?!\{))+)""")
_DIFF_NOT_A_VALUE = frozenset({"null", "None", "~", "''", '""', REDACTED, "|", ">", "|-", ">-"})


def redact_diff(text: str) -> str:
    """A ``git diff`` with the values of keys that look like credentials masked, by the rule of the config's keys
    (``wandb_api_key: ...`` in a YAML file, ``HF_TOKEN = "..."`` in a .py file, ``password=...`` in a comment, a
    JSON ``"token": "..."``), and URL passwords and credentials from the environment as everywhere. The rest of the
    diff stays as git wrote it. A bare word followed by ``(`` or ``[`` is code (``token = tokenizer(text)``) and
    stays, as do interpolations (``${oc.env:TOKEN}``) and empty values."""
    def entry(match: re.Match) -> str:
        value = match.group("value")
        if not is_secret_key(match.group("key").lstrip("+~-")):
            # the value of another key may hold one: ``args: --password=...``, ``env: API_KEY=...``, ``cmd = "run
            # --token=..."``, ``# creds: password=...``
            inner = _DIFF_ENTRY.sub(entry, value)
            return match.group(0) if inner == value else f"{match.group('head')}{inner}"
        quoted = value[:1] in "\"'" and len(value) >= 2
        inner = value[1:-1] if quoted else value
        if (not inner or value in _DIFF_NOT_A_VALUE or inner == REDACTED or inner.startswith("${")
                or (not quoted and match.string[match.end():match.end() + 1] in ("(", "["))):
            return match.group(0)
        return f"{match.group('head')}{value[0]}{REDACTED}{value[0]}" if quoted else f"{match.group('head')}{REDACTED}"

    return redact_text(_DIFF_ENTRY.sub(entry, text))


def redact_hydra_record(folder) -> None:
    """Mask secrets in Hydra's record of a job (``<output folder>/.hydra/*.yaml``: the command line's overrides, the
    composed config), which Hydra writes before the job starts: an ``+tags.api_token=...`` given on the command line
    is masked in the store and the run's config.yaml, and is here too. Files without a secret are not rewritten."""
    from pathlib import Path

    for path in sorted(Path(folder).glob("*.yaml")):
        try:
            text = path.read_text()
            masked = redact_yaml_text(text)
            if masked != text:
                path.write_text(masked)
        except OSError:
            continue
