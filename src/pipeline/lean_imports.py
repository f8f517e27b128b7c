"""Importing Lightning without the parts of torchmetrics this project never uses, and Optuna's plots without
scikit-learn.

Lightning imports torchmetrics (for its ``Metric`` type), and torchmetrics' package ``__init__`` imports
every metric domain it has: its image metrics pull in ``torchvision.models`` (and with it ``torch._dynamo``
and sympy through ``torchvision.ops``), its audio metrics ``scipy.signal``, its plotting helpers
matplotlib, its BERT-score metrics transformers (when installed: ~0.5 s). Measured on this project's 2-core machine that was ~5 s of the ~9 s ``import
pytorch_lightning`` took beside ``import torch`` (BENCHMARKS.md, "Imports"). torchmetrics guards each of
these imports with an availability check (``lightning_utilities``' ``RequirementCache`` and
``package_available``); while torchmetrics' own ``__init__`` runs, this module answers "not installed" to
those checks for the packages in :data:`HIDDEN_FROM_TORCHMETRICS`, so torchmetrics skips the optional
metric families that need them. Nothing else is affected: the packages stay importable (the image data
uses torchvision's transforms, plots use matplotlib), and the checks answer truthfully again as soon as
torchmetrics is imported. The metrics this project computes (accuracy, F1, AUROC, MSE, MAE, R²) need none
of them.

``PIPELINE_FULL_TORCHMETRICS=1`` switches this off (torchmetrics then imports everything, as without
this project).

:func:`optuna_plots` imports ``optuna.visualization.matplotlib`` and ``optuna.importance`` for a sweep's plots.
``optuna.importance`` defines its default evaluator, fANOVA, on scikit-learn's random forest and imports
scikit-learn for it (~0.9 s); the sweep ranks parameters with PED-ANOVA, which needs numpy alone. While those two
are imported, scikit-learn is reported missing to the importing thread, so Optuna records it as unavailable for
fANOVA only. Where scikit-learn is already imported nothing is hidden.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import threading
from types import ModuleType
from typing import Iterator, Optional

HIDDEN_FROM_TORCHMETRICS = frozenset({"torchvision", "scipy", "matplotlib", "transformers"})


@contextlib.contextmanager
def _optional_packages_hidden(hidden: frozenset[str]) -> Iterator[None]:
    import lightning_utilities.core.imports as availability

    check_requirement = availability.RequirementCache._check_requirement
    package_available = availability.package_available

    def _check_requirement(self) -> None:
        name = str(self.requirement or "").split(";")[0]
        for separator in "<>=!~[ ":
            name = name.split(separator)[0]
        if name in hidden:
            self.available = False
            self.message = f"{name} is not used through torchmetrics in this project (pipeline.lean_imports)"
            return
        check_requirement(self)

    def _package_available(package_name: str) -> bool:
        return False if package_name.split(".")[0] in hidden else package_available(package_name)

    availability.RequirementCache._check_requirement = _check_requirement
    availability.package_available = _package_available
    try:
        yield
    finally:
        availability.RequirementCache._check_requirement = check_requirement
        availability.package_available = package_available


class _HidingLoader(importlib.abc.Loader):
    """Runs torchmetrics' own loader with the optional packages hidden."""

    def __init__(self, loader: importlib.abc.Loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        with _optional_packages_hidden(HIDDEN_FROM_TORCHMETRICS):
            self.loader.exec_module(module)


class _LeanTorchmetricsFinder(importlib.abc.MetaPathFinder):
    """Finds ``torchmetrics`` as Python would, then wraps its loader (once; it removes itself)."""

    def find_spec(self, name: str, path=None, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if name != "torchmetrics":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        try:
            import lightning_utilities.core.imports  # noqa: F401
        except ImportError:
            return spec
        spec.loader = _HidingLoader(spec.loader)
        return spec


def install() -> None:
    """Called when ``pipeline`` is imported; a no-op when torchmetrics is already imported or when
    ``PIPELINE_FULL_TORCHMETRICS=1``."""
    if os.environ.get("PIPELINE_FULL_TORCHMETRICS") == "1" or "torchmetrics" in sys.modules:
        return
    if not any(isinstance(finder, _LeanTorchmetricsFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _LeanTorchmetricsFinder())


class _MissingInThisThread(importlib.abc.MetaPathFinder):
    """Reports ``packages`` as not installed to imports made by one thread."""

    def __init__(self, packages: frozenset[str]):
        self.packages, self.thread = packages, threading.get_ident()

    def find_spec(self, name: str, path=None, target=None) -> None:
        if name.split(".")[0] in self.packages and threading.get_ident() == self.thread:
            raise ModuleNotFoundError(f"No module named {name!r} (not used by this import: pipeline.lean_imports)",
                                      name=name)
        return None


def optuna_plots() -> ModuleType:
    """``optuna.visualization.matplotlib``, with ``optuna.importance`` imported without scikit-learn (see above)."""
    if "sklearn" in sys.modules or "optuna.importance" in sys.modules:
        from optuna.visualization import matplotlib as plots

        return plots
    finder = _MissingInThisThread(frozenset({"sklearn"}))
    sys.meta_path.insert(0, finder)
    try:
        import optuna.importance  # noqa: F401
        from optuna.visualization import matplotlib as plots
    finally:
        sys.meta_path.remove(finder)
    return plots
