"""Where a run came from: the code (git commit, uncommitted changes), the command, the machine, the library
versions and every installed package (``environment.txt``). Enough to tell two runs apart and to rebuild the
environment of either."""
from __future__ import annotations

import functools
import getpass
import platform
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Optional

from .redact import redact_diff, redact_override, redact_text

# what the numbers depend on: the training stack, and what reads, splits and preprocesses the data (scikit-learn
# ships the bundled tables and draws nothing here, but its version is what a rerun elsewhere must have to be exact)
LIBRARIES = {"torch": "torch", "pytorch_lightning": "pytorch-lightning", "mlflow": "mlflow", "numpy": "numpy",
             "pandas": "pandas", "sklearn": "scikit-learn", "torchvision": "torchvision", "tokenizers": "tokenizers",
             "hydra": "hydra-core", "omegaconf": "omegaconf", "optuna": "optuna"}


@dataclass
class GitState:
    commit: str
    dirty: bool
    diff: str  # uncommitted changes against HEAD, plus the names of untracked files; secrets masked (redact_diff)


def git_state(root: Path) -> Optional[GitState]:
    """The checkout's state, or None when ``root`` is not a git checkout (or git is missing)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True,
                              timeout=30).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        changed = git("status", "--porcelain", "--untracked-files=normal")
        diff = git("diff", "HEAD") if changed else ""
        untracked = git("ls-files", "--others", "--exclude-standard") if changed else ""
    except (OSError, subprocess.SubprocessError):
        return None
    added, named = _untracked_sources(root, untracked.splitlines())
    diff += added
    if named:
        diff += "\n# untracked files (not in the diff):\n" + "".join(f"#   {name}\n" for name in named)
    return GitState(commit=commit, dirty=bool(changed.strip()), diff=redact_diff(diff))


# untracked files whose contents go into git.diff (a model or config file of one's own, not yet committed), each up
# to UNTRACKED_FILE_BYTES and UNTRACKED_TOTAL_BYTES in all; others (data, outputs) are named only
SOURCE_SUFFIXES = (".py", ".yaml", ".yml", ".toml", ".json", ".cfg", ".ini", ".sh")
UNTRACKED_FILE_BYTES, UNTRACKED_TOTAL_BYTES = 256 * 1024, 2 * 1024 * 1024


def _untracked_sources(root: Path, names: list[str]) -> tuple[str, list[str]]:
    """(a diff that creates the untracked source files, ``git apply`` of it included; the names of the others): a
    model class in an untracked file was named in git.diff only, so its run could not be rebuilt from its record."""
    added, named, total = [], [], 0
    for name in names:
        path = root / name
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if path.suffix.lower() not in SOURCE_SUFFIXES or size > UNTRACKED_FILE_BYTES or total + size > UNTRACKED_TOTAL_BYTES:
            named.append(name)
            continue
        try:  # exit 1: the files differ, as a new file does from /dev/null
            patch = subprocess.run(["git", "diff", "--no-index", "--", "/dev/null", name], cwd=root,
                                   capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
            patch = ""
        if not patch:
            named.append(name)
            continue
        added.append(patch)
        total += size
    return "".join(added), named


def command_line(argv: Optional[list[str]] = None) -> str:
    """The command as typed, with secrets in ``key=value`` overrides and URLs masked."""
    if argv is None:
        argv = list(sys.argv)
        if argv and argv[0].endswith(".py") and getattr(sys, "orig_argv", None):
            argv = ["python", *sys.orig_argv[1:]]  # as typed: python -m pipeline.cli.train ...
    if not argv:
        return ""
    program = Path(argv[0]).name
    return redact_text(" ".join([program, *(shlex.quote(redact_override(arg)) for arg in argv[1:])]))


@functools.cache
def library_versions() -> dict[str, str]:
    """{name: version} of Python and the libraries, read once per process (a sweep's trials ask each time)."""
    versions = {"python": platform.python_version()}
    for module, distribution in LIBRARIES.items():
        try:
            versions[module] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[module] = "not installed"
    return versions


@functools.cache
def installed_packages() -> str:
    """Every package this interpreter can import from, as ``pip freeze`` lists them (``name==version``, one a line,
    sorted; where a package is installed twice on ``sys.path`` the first, the one imported), under a comment naming
    Python and the platform. Read from the names of the ``*.dist-info`` folders (~1 ms; ``importlib.metadata``
    reads every package's METADATA file: ~0.4 s). Names are normalised as pip compares them (``absl_py`` ->
    ``absl-py``)."""
    import os
    import re

    found: dict[str, str] = {}
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            project, _, version = name[:-len(".dist-info")].partition("-")
            if project and version:
                found.setdefault(re.sub(r"[-_.]+", "-", project).lower(), version)
    lines = [f"# pip install -r environment.txt   (the packages of the run's interpreter: Python "
             f"{platform.python_version()}, {platform.platform()})"]
    lines += [f"{project}=={version}" for project, version in sorted(found.items())]
    return "\n".join(lines) + "\n"


@functools.cache
def machine() -> dict[str, str]:
    """The operating system and the CPU model (float results can differ in their last bits between CPUs)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"os": platform.platform(), "cpu": cpu}


def provenance_tags(root: Path, git: Optional[GitState], command: Optional[str] = None) -> dict[str, str]:
    """Run tags: git commit and dirty flag, command line (``command``: as the training process was started;
    default: this process's), host, user and library versions.

    MLflow's own ``mlflow.source.*``/``mlflow.user`` tags are set too, so the UI shows them in its
    Source and User columns."""
    command = command_line() if command is None else command
    tags = {
        "command": command,
        "host": socket.gethostname(),
        "mlflow.user": _user(),
        "mlflow.source.name": command[:500],
        "mlflow.source.type": "LOCAL",
    }
    tags.update({f"{name}_version": version for name, version in library_versions().items()})
    tags.update(machine())
    if git is None:
        tags["git_commit"] = f"unknown ({root} is not a git checkout)"
    else:
        tags["git_commit"] = git.commit
        tags["git_dirty"] = str(git.dirty).lower()
        tags["mlflow.source.git.commit"] = git.commit
    return tags


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in a container without /etc/passwd entry
        return "unknown"


# the run's artifact folder of the YAML files its config came from in a user's config folder
USER_CONFIG_FOLDER = "user_config"


def user_config_files(hydra_cfg, project_config_dir: Path) -> dict[str, str]:
    """{path in its config folder (``experiment/mine.yaml``): text, secrets masked} of the files of a user's config
    folder (``--config-dir``, ``hydra.searchpath``) the run's config was composed from: the primary config and each
    option chosen (``experiment=mine``, ``model=tiny``) that Hydra found there first. The project's own files are in
    its git commit; these were nowhere in the store, so a run of ``experiment=mine`` could not be composed again."""
    from .redact import redact_yaml_text

    try:
        folders = [Path(str(source.path)) for source in hydra_cfg.runtime.config_sources
                   if source.schema == "file" and source.path]
        wanted = [f"{hydra_cfg.job.config_name}.yaml"] if hydra_cfg.job.get("config_name") else []
        for group, choice in hydra_cfg.runtime.choices.items():
            if choice is None or group == "hydra" or group.startswith("hydra/"):
                continue
            names = [choice] if isinstance(choice, str) else list(choice)  # a list group: callbacks=[a,b]
            wanted += [f"{group}/{name}.yaml" for name in names]
    except Exception:  # no Hydra run (pipeline-rerun, an API call): nothing of a folder of one's own
        return {}
    project, files = project_config_dir.resolve(), {}
    for relative in dict.fromkeys(wanted):
        folder = next((folder for folder in folders if (folder / relative).is_file()), None)
        if folder is not None and folder.resolve() != project:
            try:
                files[relative] = redact_yaml_text((folder / relative).read_text())
            except (OSError, UnicodeDecodeError):
                continue
    return files


def own_code(tree) -> dict[str, tuple[Path, str]]:
    """The modules of one's own that a run's config builds from (a ``_target_`` of a ``--config-dir`` model or
    callback, whose code git_commit does not cover), as ``{module: (file, text with secrets masked)}``: neither this
    package nor an installed library nor the standard library. Modules already imported (the run built them)."""
    import sysconfig

    import pipeline

    paths = sysconfig.get_paths()
    skipped = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    skipped.add(Path(pipeline.__file__).resolve().parent)
    found: dict[str, tuple[Path, str]] = {}

    def visit(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "_target_" and isinstance(value, str):
                    add(value)
                else:
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    def add(target: str) -> None:
        parts = target.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            name = ".".join(parts[:cut])
            module = sys.modules.get(name)
            if module is None:
                continue
            file = getattr(module, "__file__", None)
            if not file or name in found:
                return
            resolved = Path(file).resolve()
            if any(folder == resolved or folder in resolved.parents for folder in skipped):
                return
            try:
                found[name] = (resolved, redact_diff(resolved.read_text(errors="replace")))
            except OSError:
                pass
            return

    visit(tree)
    return found
