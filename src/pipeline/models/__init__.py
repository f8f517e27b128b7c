"""Plain ``nn.Module`` models. They know the shape of their inputs and outputs, never which data
set produced them. Tabular models also take ``categorical_cardinalities`` (learned embeddings of the
categorical columns that close their input, see ``pipeline.models.categorical``).

Every model takes ``(input_shape, num_outputs, dropout=0.0, l1=0.0, ...)`` (text models also
``vocab_size`` and ``pad_id``), returns raw predictions / logits of shape ``(B, num_outputs)``,
stores ``l1`` for the training objective, and declares the ``modalities`` and ``tasks`` it
supports so an incompatible model/data choice is refused before any data is loaded.
"""
import contextlib
import contextvars
import importlib

# each model's module is imported when it is used (the configs name them: pipeline.models.mlp.MLP), so a
# tabular run does not import torchvision for the ResNet
_HOMES = {"CNN": "cnn", "LinearRegression": "linear", "LogisticRegression": "linear", "MLP": "mlp",
          "ResNet": "resnet", "BagOfWords": "text", "RNNClassifier": "text", "TextCNN": "text"}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"pipeline.models.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'pipeline.models' has no attribute {name!r}")


# inputs the data offers to the models that want them (the words of a word-level vocabulary)
OFFERED_INPUTS = frozenset({"vocabulary"})


def model_inputs(spec, target=None) -> dict:
    """What the data tells a model about its inputs and outputs (``DataSpec`` -> constructor arguments).

    A data set that needs more wiring than shapes (a vocabulary, categorical cardinalities, ...) puts the
    extra constructor arguments in ``spec.model_inputs``. Those in :data:`OFFERED_INPUTS` the model class
    ``target`` gets only if its constructor names them (no ``target``: all): only NBSVM takes a text set's
    ``vocabulary``. The others every model of that data must take."""
    inputs = {"input_shape": tuple(spec.input_shape), "num_outputs": spec.num_outputs}
    if spec.vocab_size is not None:
        inputs["vocab_size"] = spec.vocab_size
        inputs["pad_id"] = spec.extra.get("pad_id", 0)
    offered = dict(getattr(spec, "model_inputs", None) or {})
    optional = OFFERED_INPUTS & offered.keys()
    if optional and target is not None:
        from pipeline.config import accepted_parameters

        accepted = accepted_parameters(target)
        for key in optional - (accepted if accepted is not None else optional):
            del offered[key]
    return {**inputs, **offered}


def refuse_inputs_not_taken(name: str, target, inputs: dict) -> None:
    """A class of one's own that does not take what the data gives every model of it (a table's categorical columns
    as ``categorical_cardinalities``; a text's ``vocab_size``) was "model: cannot build it: Mine.__init__() got an
    unexpected keyword argument 'categorical_cardinalities'", which said neither what it is nor the way out."""
    from pipeline.config import accepted_parameters
    from pipeline.errors import ConfigError

    accepted = accepted_parameters(target)
    missing = [key for key in inputs if accepted is not None and key not in accepted]
    if not missing:
        return
    if "categorical_cardinalities" in missing:
        columns = len(inputs["categorical_cardinalities"])
        raise ConfigError(f"model._target_={name} takes no {' or '.join(missing)}: the table has {columns} categorical "
                          f"column{'s' if columns != 1 else ''}, given to the model as the category codes that close "
                          "each row, with their cardinalities (docs/training.md, 'A model of your own'); take "
                          "categorical_cardinalities and categorical_unknown_seen, or set "
                          "data.categorical_encoding=onehot (one-hot columns, no argument)")
    raise ConfigError(f"model._target_={name} takes no {', '.join(missing)}, which this data gives every model of it "
                      "(docs/training.md, 'A model of your own'): add them to its __init__")


# off while a model is built to take a checkpoint's weights (pipeline-predict <checkpoint>, pipeline-eval): the
# checkpoint holds every weight, so a pretrained model's own (a torchvision model.weights file, torch hub's cache, a
# download) are neither read nor needed; the architecture alone is built
PRETRAINED_WEIGHTS = contextvars.ContextVar("pipeline_pretrained_weights", default=True)


@contextlib.contextmanager
def weights_from_checkpoint():
    """Models built (and their configs checked) meanwhile leave out their pretrained weights."""
    token = PRETRAINED_WEIGHTS.set(False)
    try:
        yield
    finally:
        PRETRAINED_WEIGHTS.reset(token)


def build_model(model_cfg, spec):
    """The ``nn.Module`` that ``model_cfg`` (a ``conf/model`` node) names, sized for the data ``spec``. What it builds
    must be one: a class of one's own that does not subclass ``nn.Module`` failed later, in the forward probe, as
    "unexpected AttributeError: 'Mine' object has no attribute 'training'" (exit 1, a bug's)."""
    from hydra.utils import get_object, instantiate
    from torch import nn

    from pipeline.errors import ConfigError

    target = get_object(model_cfg._target_)
    inputs = model_inputs(spec, target)
    refuse_inputs_not_taken(model_cfg._target_, target, inputs)
    model = instantiate(model_cfg, **inputs)
    if not isinstance(model, nn.Module):
        kind = type(model)
        raise ConfigError(f"model._target_={model_cfg._target_} built a {kind.__module__}.{kind.__qualname__}, not a "
                          "torch.nn.Module: a model is a class of nn.Module (class Mine(nn.Module), calling "
                          "super().__init__() first) or a function that returns one")
    l1 = model_cfg.get("l1")
    if l1 and float(getattr(model, "l1", 0.0) or 0.0) != float(l1):
        # the training loss reads the penalty from the model: one taking l1 without keeping it trained without it,
        # while the run logged model.l1 (and a sweep searched it) as if it applied
        raise ConfigError(f"model.l1={l1}: {model_cfg._target_} keeps no l1 (self.l1 = l1 in its __init__), which "
                          "the training loss reads: the penalty would not be applied; store it, or leave model.l1 at 0")
    return model


__all__ = [
    "build_model",
    "model_inputs",
    "weights_from_checkpoint",
    "BagOfWords",
    "CNN",
    "LinearRegression",
    "LogisticRegression",
    "MLP",
    "NBSVM",
    "PretrainedTransformer",
    "RNNClassifier",
    "ResNet",
    "TabularResNet",
    "TextCNN",
]
