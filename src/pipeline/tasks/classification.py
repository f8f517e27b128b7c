"""Classification: binary (one logit, BCE-with-logits) or multiclass (K logits, cross-entropy), optionally with a
weight per class (``task.class_weights``); metrics acc, f1, auroc and ap (average precision; the last two
macro one versus rest for more than two classes); a confusion matrix of the test split; stratified splits."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Optional

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from pipeline.errors import ConfigError, warn_once
from pipeline.models.heads import Probabilities

from .metrics import binary, multiclass
from .base import TaskModule

log = logging.getLogger(__name__)


class ClassificationModule(TaskModule):
    kind: ClassVar[str] = "classification"
    stratify: ClassVar[bool] = True
    undefined_reasons: ClassVar[dict[str, str]] = {
        "auroc": "auroc needs rows of both classes, or of two classes at least",
        "ap": "ap needs rows of both classes, or of two classes at least: on rows of one class it is 1 whatever the model",
        "f1": "binary f1 needs a row of the positive class or a prediction of it: with neither it is 0/0"}

    def __init__(self, model: nn.Module, optimizer, scheduler=None, monitor: str = "val/acc", mode: str = "max",
                 num_classes: int = 2, label_smoothing: float = 0.0, class_weights: Optional[list[float]] = None,
                 positive_class: int = 1, positive_name: Optional[str] = None):
        super().__init__(model, optimizer, scheduler, monitor, mode)
        self.num_classes = int(num_classes)
        self.binary = self.num_classes == 2
        # binary: the class (0 or 1, in class order) that f1, ap, the precision-recall curve and a predict
        # --threshold are of; the model's output stays P(class 1)
        self.positive_class = int(positive_class)
        self.positive_name = positive_name if self.binary else None
        self.class_names: Optional[list[str]] = None  # the data's, for notes (from_spec)
        self.label_smoothing = float(label_smoothing)
        # one weight per class in the training loss (None: all 1); not saved in checkpoints, the config has it
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
        self.register_buffer("class_weight", weights, persistent=False)

    @classmethod
    def from_spec(cls, model, optimizer, scheduler, spec, task_cfg) -> "ClassificationModule":
        weights = class_weights(task_cfg.get("class_weights"), spec)
        positive, name = positive_class(task_cfg.get("positive_class"), spec)
        if weights is not None and optimizer is not None and task_cfg.monitor == "val/loss":
            warn_once(log, "task.class_weights weighs the training loss only; the checkpoint is chosen on val/loss, "
                      "plain cross-entropy, which favours the common classes: consider task.monitor=val/f1 "
                      "task.mode=max (or val/ap, the average precision, or val/auroc)"
                      + (f"; binary f1 and ap are of the positive class, {name} (task.positive_class)"
                         if name is not None else ""))
        if optimizer is not None and name is not None:  # training (not pipeline-predict rebuilding the model)
            warning = majority_positive_warning(positive, spec, explicit=task_cfg.get("positive_class") is not None)
            if warning:
                warn_once(log, warning)
        module = cls(model, optimizer, scheduler, monitor=task_cfg.monitor, mode=task_cfg.mode,
                     num_classes=spec.num_classes or 2, label_smoothing=task_cfg.get("label_smoothing", 0.0),
                     class_weights=weights, positive_class=positive, positive_name=name)
        module.class_names = [str(name) for name in spec.class_names] if spec.class_names else None
        return module

    def run_tags(self) -> dict[str, str]:
        """``positive_class``: the class binary f1 and ap are of (none for more than two classes)."""
        return {"positive_class": self.positive_name} if self.positive_name is not None else {}

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.class_weight is not None and self.trainer.accumulate_grad_batches > 1:
            warn_once(log, f"task.class_weights with trainer.accumulate_grad_batches={self.trainer.accumulate_grad_batches}: "
                      "each accumulated batch takes the weighted mean over its own rows, so a step is not the weighted "
                      "mean over all of them (as one batch of effective_batch_size rows, or several devices, take it)")

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        if self.class_weight is None:
            return self._cross_entropy(output, target, self.label_smoothing, None)
        total, weights = self._weighted_cross_entropy(output, target, self.label_smoothing, self.class_weight)
        trainer = getattr(self, "_trainer", None)
        if trainer is not None and trainer.world_size > 1 and torch.is_grad_enabled():
            # DDP averages the ranks' gradients: each rank's sum over the weight sum of every rank's rows (times the
            # ranks) makes the step the weighted mean over all of them, as one process's batch of those rows takes
            # it; each rank's own weighted mean would weigh a rank's rows by its share of weights instead
            every_rank = trainer.strategy.reduce(weights.detach().clone(), reduce_op="sum")
            return total * trainer.world_size / every_rank
        return total / weights

    def evaluation_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """Plain cross-entropy, without smoothing or class weights: val/loss and test/loss compare across runs."""
        return self._cross_entropy(output, target, 0.0, None)

    def _weighted_cross_entropy(self, output: Tensor, target: Tensor, smoothing: float,
                                weight: Tensor) -> tuple[Tensor, Tensor]:
        """(the sum of each row's loss times its class's weight, the sum of those weights): their ratio is
        cross_entropy(weight=...)'s weighted mean, label smoothing included."""
        if weight.dtype != output.dtype:  # float64 or bf16-true runs
            weight = weight.to(output.dtype)
        row_weights = weight[target.long()]
        if self.binary:
            labels = target.to(output.dtype)
            if smoothing:
                labels = labels * (1 - smoothing) + 0.5 * smoothing
            losses = F.binary_cross_entropy_with_logits(output.squeeze(-1), labels, reduction="none")
            return (losses * row_weights).sum(), row_weights.sum()
        return F.cross_entropy(output, target, weight=weight, label_smoothing=smoothing, reduction="sum"), row_weights.sum()

    def _cross_entropy(self, output: Tensor, target: Tensor, smoothing: float, weight: Optional[Tensor]) -> Tensor:
        if weight is not None and weight.dtype != output.dtype:  # float64 or bf16-true runs
            weight = weight.to(output.dtype)
        if self.binary:
            labels = target
            target = target.to(output.dtype)
            if smoothing:
                target = target * (1 - smoothing) + 0.5 * smoothing
            if weight is None:
                return F.binary_cross_entropy_with_logits(output.squeeze(-1), target)
            # the weighted mean, as cross_entropy(weight=...) takes it: sum(w_i * loss_i) / sum(w_i)
            row_weights = weight[labels.long()]
            losses = F.binary_cross_entropy_with_logits(output.squeeze(-1), target, reduction="none")
            return (losses * row_weights).sum() / row_weights.sum()
        return F.cross_entropy(output, target, weight=weight, label_smoothing=smoothing)

    @classmethod
    def metric_names(cls, spec) -> tuple[str, ...]:
        return ("acc", "f1", "auroc", "ap")

    def metric_inputs(self, output: Tensor) -> Tensor:
        return self.probabilities(output)

    def note_on_test_rows(self, targets: Tensor) -> Optional[str]:
        """More than two classes, some without a test row: macro f1, auroc and ap average over the others (as
        scikit-learn's do over the labels present), so a test set lacking a hard class scores higher; said."""
        if self.binary:
            return None  # a binary split of one class: auroc and ap are undefined, and said so
        present = set(torch.unique(targets.reshape(-1)).tolist())
        absent = [index for index in range(self.num_classes) if index not in present]
        if not absent:
            return None
        names = self.class_names or [str(index) for index in range(self.num_classes)]
        shown = ", ".join(str(names[index]) for index in absent[:8]) + (", ..." if len(absent) > 8 else "")
        return (f"the test rows hold no example of {len(absent)} of the {self.num_classes} classes ({shown}): test/f1 "
                f"averages over the classes predicted or present, test/auroc and test/ap over the "
                f"{self.num_classes - len(absent)} present")

    def compute_metrics(self, inputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
        return binary(inputs, targets, self.positive_class) if self.binary else multiclass(inputs, targets,
                                                                                             self.num_classes)

    def weighted_metrics(self, inputs, targets):
        from .intervals import binary as weighted_binary, multiclass as weighted_multiclass

        return (weighted_binary(inputs, targets, self.positive_class) if self.binary
                else weighted_multiclass(inputs, targets, self.num_classes))

    def probabilities(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output.squeeze(-1)) if self.binary else output.softmax(-1)

    def predictor(self) -> nn.Module:
        predictor = Probabilities(self.model, self.binary)
        # the logged model's meta.json keeps it: pipeline-predict --threshold is the positive class's cut-off
        predictor.positive_class = self.positive_name
        return predictor

    def test_plots(self, y_true, outputs, folder: Path, spec) -> list[Path]:
        from pipeline import plots

        figures = [plots.confusion_matrix(y_true, predicted_classes(outputs), spec.num_classes or 2,
                                          folder / "confusion_matrix.png", spec.class_names),
                   plots.roc_and_precision_recall(y_true, outputs, folder / "roc_pr_curves.png", spec.class_names,
                                                  positive_class=self.positive_class)]
        return [figure for figure in figures if figure is not None]


def class_weights(setting: Any, spec) -> Optional[list[float]]:
    """``task.class_weights`` as one weight per class, in class order (None: every class weighs 1).

    ``balanced``: n / (k * n_c) for the n training rows of k classes, n_c of class c (scikit-learn's
    ``class_weight="balanced"``); a list: one weight per class, in the order of the class names; a mapping
    ``{class name: weight}``: the classes it names, the others 1."""
    if setting is None:
        return None
    names = list(spec.class_names or [str(i) for i in range(spec.num_classes or 2)])
    allowed = (f"allowed: null, balanced, a list of {len(names)} positive weights in class order ({', '.join(names)}), "
               "or {class: weight}")
    if isinstance(setting, str):
        if setting != "balanced":
            raise ConfigError(f"task.class_weights={setting!r} is not a weighting; {allowed}")
        counts = spec.extra.get("class_counts")
        if not counts:
            raise ConfigError("task.class_weights=balanced needs the training split's class counts, which this run's "
                              f"data does not give; give the weights instead ({allowed})")
        present = [c for c in counts if c > 0]
        total = sum(present)
        return [total / (len(present) * c) if c > 0 else 1.0 for c in counts]
    if hasattr(setting, "items"):  # a dict (DictConfig): keys are class names; Hydra reads {1: 3} with an int key
        weights = {str(k).strip(): v for k, v in setting.items()}
        unknown = [k for k in weights if k not in names]
        if unknown:
            raise ConfigError(f"task.class_weights names {unknown}, not classes of this data ({', '.join(names)})")
        values = [weights.get(name, 1.0) for name in names]
    elif hasattr(setting, "__len__"):  # a list (ListConfig)
        values = list(setting)
        if len(values) != len(names):
            raise ConfigError(f"task.class_weights has {len(values)} weights for {len(names)} classes; {allowed}")
    else:
        raise ConfigError(f"task.class_weights={setting!r} is not a weighting; {allowed}")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ConfigError(f"task.class_weights={list(values)!r}: the weights must be numbers; {allowed}") from None
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ConfigError(f"task.class_weights={values}: every weight must be a finite number > 0")
    return values


def positive_class(setting: Any, spec) -> tuple[int, Optional[str]]:
    """``task.positive_class`` as (its position in class order, its name); (1, the second class's name) for null,
    the class binary metrics have always been of. A label as written in the data (``fraud``), or for numeric
    labels the number (``1``, ``1.0`` for a class named ``1``). (1, None) for more than two classes, where f1 and
    ap are macro averages over every class: a positive class is refused there."""
    count = spec.num_classes or 2
    names = [str(n) for n in (spec.class_names or [str(i) for i in range(count)])]
    if count != 2:
        if setting is not None:
            raise ConfigError(f"task.positive_class={setting}: this data has {count} classes, whose f1 and ap are "
                              "macro averages over every class; a positive class is for two classes. Leave it null")
        return 1, None
    if setting is None:
        return 1, names[1]
    wanted = str(setting).strip()
    for index, name in enumerate(names):
        if name == wanted or _same_number(name, wanted):
            return index, name
    raise ConfigError(f"task.positive_class={wanted} is not a class of this data; its classes are {', '.join(names)}")


def _same_number(name: str, wanted: str) -> bool:
    try:
        return float(name) == float(wanted)
    except ValueError:
        return False


def majority_positive_warning(positive: int, spec, explicit: bool, share: float = 0.25) -> Optional[str]:
    """A line when the positive class holds most training rows and the other class fewer than ``share`` of them:
    f1 and ap then score how well the model finds the common class, and a useless model that answers it for
    every row looks good (None otherwise, or when ``task.positive_class`` chose it)."""
    counts = spec.extra.get("class_counts") if spec.extra else None
    if explicit or not counts or len(counts) != 2 or sum(counts) == 0:
        return None
    other = 1 - positive
    names = [str(n) for n in (spec.class_names or ["0", "1"])]
    minority = counts[other] / sum(counts)
    if counts[positive] <= counts[other] or minority >= share:
        return None
    return (f"f1 and ap are of the class {names[positive]} ({100 * (1 - minority):.0f} % of the training rows), "
            f"the second in sorted order, not of the rare class {names[other]} ({100 * minority:.1f} %): a model that "
            f"answers {names[positive]} for every row scores well; task.positive_class={names[other]} scores the "
            "rare class")


def predicted_classes(probabilities: np.ndarray) -> np.ndarray:
    """The class of each row: binary models output P(class 1) per row (class 1 above 0.5, as test/acc counts it and
    the logged model answers), multiclass models a probability per class (the most probable)."""
    if probabilities.ndim == 1 or probabilities.shape[-1] == 1:
        return (probabilities.reshape(-1) > 0.5).astype(np.int64)
    return probabilities.argmax(-1)

_Probabilities = Probabilities  # the name pickled models of earlier versions refer to
