"""Command-line tools: pipeline-ui, pipeline-compare, pipeline-rerun, pipeline-predict (pipeline-train is
pipeline.train)."""

from pathlib import Path


def user_path(text: str) -> Path:
    """A path argument as a shell user means it: ``~/x`` is in the home folder (the shell leaves ``--input=~/x`` and
    a quoted ``'~/x'`` as written)."""
    return Path(text).expanduser()
