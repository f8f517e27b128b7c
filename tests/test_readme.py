"""The README is true: every command in its shell blocks is one the tools accept, checked the way each tool
checks its own command line (pipeline-train: composed and validated exactly as a run does before it loads
anything; the other tools: parsed by their own argument parser), every make target exists, every linked file
exists, and it stays short."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

pytestmark = pytest.mark.unit

README = PROJECT_ROOT / "README.md"
DOCS = sorted((PROJECT_ROOT / "docs").glob("*.md"))
# programs a README may show that are not ours (documentation of the environment, not commands to check)
OTHER_PROGRAMS = {"source", "tensorboard", "torchrun", "srun", "sbatch", "mlflow", "python", "pip", "cp", "rsync",
                  "export", "hf", "huggingface-cli", "optuna-dashboard", "env", "CUDA_VISIBLE_DEVICES=2,3", "ssh",
                  "scripts/gpu_check.sh", "HF_HOME=/shared/hf", "PIPELINE_DATA_DIR=../shared/data"}
PLACEHOLDERS = {"<run id>": "0123456789abcdef0123456789abcdef", "<run id | outputs/.../checkpoints/best-*.ckpt>":
                "0123456789abcdef0123456789abcdef"}


def shell_commands(path: Path) -> list[str]:
    """The commands of the ```bash blocks of ``path``: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", path.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def commands_of(paths: list[Path]) -> list[tuple[str, str]]:
    return [(path.name, command) for path in paths for command in shell_commands(path)]


def test_readme_is_short_and_starts_with_the_quick_start():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, len(lines)
    assert "## Quick start" in "\n".join(lines[:12])


def test_every_link_in_the_readme_and_docs_exists():
    for path in [README, *DOCS]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"


@pytest.mark.parametrize("where,command", commands_of([README]), ids=lambda value: value[:90])
def test_every_readme_command_is_accepted(where, command, tmp_path, monkeypatch):
    check_command(command, tmp_path, monkeypatch)


@pytest.mark.parametrize("where,command", commands_of(DOCS), ids=lambda value: value[:90])
def test_every_command_in_the_docs_is_accepted(where, command, tmp_path, monkeypatch):
    check_command(command, tmp_path, monkeypatch)


def check_command(command: str, tmp_path: Path, monkeypatch) -> None:
    for placeholder, value in PLACEHOLDERS.items():
        command = command.replace(placeholder, value)
    argv = shlex.split(command)
    program = argv[0]
    if program == "make":
        targets = re.findall(r"^([a-z-]+):", (PROJECT_ROOT / "Makefile").read_text(), re.M)
        assert all(target in targets for target in argv[1:] if "=" not in target), (command, targets)
    elif program in ("pipeline-train", ".venv/bin/pipeline-train"):
        check_training_command(argv[1:], tmp_path, monkeypatch)
    elif program.startswith("pipeline-"):
        check_tool_command(program, argv[1:])
    elif program.endswith("benchmarks/") or program == ".venv/bin/python":
        assert (PROJECT_ROOT / argv[1]).is_file(), command
    else:
        assert program in OTHER_PROGRAMS, f"README shows '{program}': check it here or list it in OTHER_PROGRAMS"


def check_training_command(arguments: list[str], tmp_path: Path, monkeypatch) -> None:
    """What pipeline-train checks before it loads anything: the command line composes, and the composed
    config passes validation (unknown keys, types, ranges, incompatible choices)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from pipeline.cli.errors import check_command_line
    from pipeline.config import CONFIG_DIR, validate

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    flags = {"--cfg", "-m", "--multirun"}
    overrides, config_dir = [], CONFIG_DIR
    skip_next = False
    for index, argument in enumerate(arguments):
        if skip_next:
            skip_next = False
        elif argument == "--config-dir":
            config_dir, skip_next = None, True  # the user's own folder: only composed by Hydra at run time
        elif argument not in flags and not (index > 0 and arguments[index - 1] == "--cfg"):
            overrides.append(argument)
    if config_dir is None:
        return
    class Refused(Exception):
        pass

    def refuse(code=0):
        raise Refused(code)

    monkeypatch.setattr("sys.exit", refuse)
    try:
        check_command_line(arguments, CONFIG_DIR)
    except Refused:
        pytest.fail(f"pipeline-train {' '.join(arguments)} is refused (see the Error: line above)")
    monkeypatch.undo()
    sweep_values = [o for o in overrides if re.search(r"=\s*'?(interval|choice|range|tag)\(", o) or
                    ("," in o.split("=", 1)[-1] and not o.split("=", 1)[-1].startswith("["))]
    # an example checkpoint path names a file of the reader's own runs
    plain = [o for o in overrides if o not in sweep_values and not o.startswith("ckpt_path=")]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR)):
        cfg = compose("config", overrides=[*plain, f"paths.output_dir={tmp_path / 'out'}"])
    GlobalHydra.instance().clear()
    if "model.name=" in " ".join(plain) and "transformer" in " ".join(plain):
        return  # a Hugging Face model id: validation would (rightly) refuse it here, where nothing is downloaded
    if cfg.model._target_.endswith("TorchvisionClassifier") and str(cfg.model.get("weights")) not in ("none", "None"):
        cache_pretrained_weights(str(cfg.model.name), tmp_path / "torch", monkeypatch)
    validate(cfg)


def cache_pretrained_weights(name: str, torch_home: Path, monkeypatch) -> None:
    """What downloading the weights would leave in torch hub's cache (random values: nothing is downloaded
    here), so validation checks the command as on a machine that has them."""
    import torch
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.get_model(name).state_dict(), cached)
    monkeypatch.setenv("TORCH_HOME", str(torch_home))


TOOLS = {"pipeline-compare": "pipeline.cli.compare", "pipeline-rerun": "pipeline.cli.rerun",
         "pipeline-eval": "pipeline.cli.eval", "pipeline-ui": "pipeline.cli.ui", "pipeline-predict": "pipeline.cli.predict"}


def check_tool_command(program: str, arguments: list[str]) -> None:
    import importlib

    assert program in TOOLS, f"unknown tool {program}"
    module = importlib.import_module(TOOLS[program])
    parse = getattr(module, "parse_args")
    try:
        parse(arguments)
    except SystemExit as exit_:
        pytest.fail(f"{program} {' '.join(arguments)}: its parser refuses it (exit {exit_.code})")
