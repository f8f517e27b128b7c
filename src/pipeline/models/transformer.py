"""A pretrained Hugging Face transformer with a sequence-classification head, fine-tuned as a whole.

Takes right-padded token ids (B, L) from the model's own tokenizer (the text data modules load it
when ``data.tokenizer`` names the model: by default ``${model.name}``) and returns logits (B,
num_outputs). Weights come from the Hugging Face cache (``HF_HOME``) or a local folder written by
``save_pretrained``; ``transformers`` is imported only here, when this model is built.
"""
from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Optional, Sequence, Union

import torch
from torch import Tensor, nn

# where each architecture keeps the dropout of its classification head
HEAD_DROPOUT_KEYS = ("classifier_dropout", "seq_classif_dropout", "summary_first_dropout")
# parameters fine-tuned without weight decay (BERT's recipe: biases and normalisation weights)
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight", "ln_")


@contextlib.contextmanager
def _load_report_quiet(quiet: bool):
    """transformers' warnings (its load report among them) held back meanwhile, when ``quiet``."""
    if not quiet:
        yield
        return
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 matrix work is native here: a CUDA GPU that says so, or a CPU with AMX/AVX512-BF16."""
    return _bf16_supported(device.type)


@lru_cache(maxsize=None)
def _bf16_supported(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device_type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "amx_bf16" in flags or "avx512_bf16" in flags
    return False


def _check_has_text_head(name: str, config) -> None:
    """A model type transformers builds no sequence-classification head for (a ViT, a Whisper) is refused as such;
    from_pretrained's error was reported as a folder lacking the files it holds."""
    from pipeline.config import ConfigError

    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES as heads
    except ImportError:  # another layout of transformers: from_pretrained says it
        return
    model_type = getattr(config, "model_type", None)
    if model_type and model_type not in heads:
        known = [kind for kind in ("bert", "distilbert", "roberta", "deberta-v2", "electra", "gpt2") if kind in heads]
        raise ConfigError(f"model.name={name} is a {model_type} model, which transformers has no sequence-"
                          f"classification head for (AutoModelForSequenceClassification takes {', '.join(known)} and "
                          f"{len(heads) - len(known)} other types); choose a text model")


class PretrainedTransformer(nn.Module):
    """``AutoModelForSequenceClassification.from_pretrained(name, num_labels=num_outputs)``.

    ``bf16``: ``auto`` runs the forward pass under bf16 autocast where the device has native bf16
    (weights and optimizer state stay float32, as ``trainer.precision=bf16-mixed`` does), ``true``
    always, ``false`` never. ``dropout`` (null: the pretrained config's) sets the head's dropout.
    ``head_lr_scale`` multiplies the learning rate of the new head against the pretrained body.
    """

    modalities: ClassVar[frozenset[str]] = frozenset({"text"})
    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        vocab_size: int,
        pad_id: int = 0,
        name: str = "",
        bf16: Union[bool, str] = "auto",
        head_lr_scale: float = 1.0,
        dropout: Optional[float] = None,
        l1: float = 0.0,
    ):
        super().__init__()
        from pipeline.config import ConfigError
        from pipeline.hub import unavailable
        from pipeline.models import PRETRAINED_WEIGHTS

        if not name:
            raise ConfigError("model.name must be set: a Hugging Face model id (e.g. distilbert-base-uncased) "
                              "or a local folder written by save_pretrained")
        if bf16 not in (True, False, "auto"):
            raise ConfigError(f"model.bf16={bf16!r} is not allowed; choose auto, true or false")
        try:
            from transformers import AutoConfig, AutoModelForSequenceClassification
        except ImportError:
            raise ConfigError("model=transformer needs the transformers package: pip install transformers") from None
        source = str(Path(name).expanduser()) if Path(name).expanduser().is_dir() else name
        try:
            config = AutoConfig.from_pretrained(source, num_labels=num_outputs)
        except Exception as error:  # OSError: not cached / offline / no config in the folder
            raise ConfigError(unavailable("model.name", name, error)) from None
        _check_has_text_head(name, config)
        positions = getattr(config, "max_position_embeddings", None)
        if isinstance(positions, int) and input_shape and input_shape[0] > positions:  # failed mid-run otherwise
            raise ConfigError(f"data.max_length={input_shape[0]} is longer than model.name={name} takes ({positions} "
                              f"positions, its config's max_position_embeddings); set data.max_length<={positions}")
        try:
            if dropout is not None:
                for key in HEAD_DROPOUT_KEYS:
                    if hasattr(config, key):
                        setattr(config, key, float(dropout))
            config.pad_token_id = pad_id
            # a checkpoint fine-tuned for another number of classes gets a new head, as a base model does; rebuilt
            # for a checkpoint's weights (pipeline-predict, -eval), transformers' report of a head "newly initialized"
            # is no news: the checkpoint's head replaces it
            with _load_report_quiet(not PRETRAINED_WEIGHTS.get()):
                self.network = AutoModelForSequenceClassification.from_pretrained(source, config=config,
                                                                                  ignore_mismatched_sizes=True)
        except Exception as error:  # OSError: not cached / offline / no weights in the folder
            raise ConfigError(unavailable("model.name", name, error)) from None
        self.network.train()  # from_pretrained returns it in eval mode, and Lightning keeps submodules' modes
        embeddings = self.network.get_input_embeddings()
        if embeddings is not None and vocab_size > embeddings.num_embeddings:  # the tokenizer added tokens
            self.network.resize_token_embeddings(vocab_size)
        self.name = name
        self.pad_id = pad_id
        self.bf16 = bf16
        self.head_lr_scale = float(head_lr_scale)
        self.l1 = l1

    @classmethod
    def check_config(cls, node) -> None:
        """Before anything runs (config validation): a local folder exists, or the model is in the Hugging Face
        cache, or it can be downloaded (downloads on and the Hub reachable)."""
        from pipeline.config import ConfigError
        from pipeline.hub import check_at_hand

        try:
            check_at_hand("model.name", node.get("name"))
        except ValueError as error:
            raise ConfigError(str(error)) from None

    def forward(self, tokens: Tensor) -> Tensor:
        tokens = tokens.long()
        attention_mask = (tokens != self.pad_id).long()
        use_bf16 = self.bf16 is True or (self.bf16 == "auto" and bf16_supported(tokens.device))
        with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=use_bf16):
            logits = self.network(input_ids=tokens, attention_mask=attention_mask).logits
        return logits.float()

    def _is_head(self, parameter_name: str) -> bool:
        prefix = getattr(self.network, "base_model_prefix", "")
        return not parameter_name.startswith(prefix + ".") if prefix else False

    def parameter_groups(self) -> list[dict]:
        """Body and head, each with and without weight decay (biases and normalisation weights have none)."""
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for parameter_name, parameter in self.network.named_parameters():
            if not parameter.requires_grad:
                continue
            key = (self._is_head(parameter_name), any(part in parameter_name for part in NO_DECAY))
            groups.setdefault(key, []).append(parameter)
        result = []
        for (head, no_decay), parameters in sorted(groups.items()):
            group = {"params": parameters, "lr_scale": self.head_lr_scale if head else 1.0}
            if no_decay:
                group["weight_decay"] = 0.0
            result.append(group)
        return result
