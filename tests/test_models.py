"""Fast checks of every model built from its Hydra config: output shapes, finite gradients,
the textbook MLP's layer names, padding invariance of the text models, and config errors."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pipeline.config import CONFIG_DIR

pytestmark = pytest.mark.unit

CONF = CONFIG_DIR / "model"
VOCAB_SIZE = 50
PAD_ID = 0
TEXT_LENGTH = 64

IMAGE_SHAPES = {"digits": (1, 8, 8), "fmnist": (1, 28, 28), "cifar": (3, 32, 32)}


def build(name: str, **kwargs):
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml"), **kwargs)


def build_text(name: str, num_outputs: int = 3, **overrides):
    cfg = OmegaConf.merge(OmegaConf.load(CONF / f"{name}.yaml"), overrides)
    return instantiate(
        cfg, input_shape=(TEXT_LENGTH,), num_outputs=num_outputs, vocab_size=VOCAB_SIZE, pad_id=PAD_ID
    )


def assert_trains(model, x, num_outputs):
    torch.manual_seed(0)
    out = model(x)
    assert out.shape == (x.shape[0], num_outputs)
    assert out.dtype == torch.float32
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def padded_tokens(lengths, total_length=TEXT_LENGTH, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.full((len(lengths), total_length), PAD_ID, dtype=torch.long)
    for row, length in enumerate(lengths):
        tokens[row, :length] = torch.randint(1, VOCAB_SIZE, (length,), generator=generator)
    return tokens


# ----- every config instantiates and trains ---------------------------------------------------
@pytest.mark.parametrize("name", ["linear", "logistic", "mlp"])
@pytest.mark.parametrize("num_outputs", [1, 3])
def test_tabular_models(name, num_outputs):
    model = build(name, input_shape=(10,), num_outputs=num_outputs)
    assert "tabular" in model.modalities
    assert_trains(model, torch.randn(8, 10), num_outputs)


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("data", sorted(IMAGE_SHAPES))
def test_image_models(name, data):
    shape = IMAGE_SHAPES[data]
    model = build(name, input_shape=shape, num_outputs=10)
    assert "image" in model.modalities and "classification" in model.tasks
    assert_trains(model, torch.randn(4, *shape), 10)


def test_a_channels_last_conv_net_exports_quietly_and_loads_with_its_outputs(tmp_path):
    """torch's archive writer warns about channels-last weights ("No complete tensor found in the group")
    though it saves them whole: the export says nothing to the user, and the loaded program answers alike."""
    import warnings

    from pipeline.tracking.raw_model import export_predictor

    torch.manual_seed(0)
    model = build("cnn", input_shape=(1, 28, 28), num_outputs=10).eval().to(memory_format=torch.channels_last)
    example = torch.randn(3, 1, 28, 28)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert export_predictor(model, example, tmp_path / "predictor.pt2") == "pt2"
    assert [str(w.message) for w in caught] == []
    loaded = torch.export.load(tmp_path / "predictor.pt2").module()
    batch = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(batch), model(batch), atol=1e-6)


@pytest.mark.parametrize("name", ["bow", "textcnn", "rnn"])
@pytest.mark.parametrize("num_outputs", [1, 4])
def test_text_models(name, num_outputs):
    model = build_text(name, num_outputs=num_outputs)
    assert model.modalities == {"text"} and model.tasks == {"classification"}
    assert_trains(model, padded_tokens([64, 10, 1, 0]), num_outputs)


def test_lstm_multilayer_and_short_inputs():
    lstm = build_text("rnn", cell="lstm", num_layers=2, bidirectional=False, dropout=0.1)
    assert_trains(lstm, padded_tokens([5, 2]), 3)
    textcnn = build_text("textcnn")  # kernels up to 5 on a 2-token input
    assert_trains(textcnn, padded_tokens([2, 1], total_length=2), 3)


def test_every_config_takes_dropout_and_l1():
    for path in sorted(CONF.glob("*.yaml")):
        cfg = OmegaConf.load(path)
        assert {"dropout", "l1"} <= set(cfg), path.name
        assert not {"input_shape", "num_outputs", "vocab_size", "pad_id"} & set(cfg), path.name
    model = instantiate(OmegaConf.load(CONF / "cnn.yaml"), input_shape=(1, 8, 8), num_outputs=10, l1=1e-5)
    assert model.l1 == 1e-5


def test_tasks_and_modalities():
    assert build("linear", input_shape=(3,), num_outputs=1).tasks == {"regression"}
    assert build("logistic", input_shape=(3,), num_outputs=1).tasks == {"classification"}
    assert build("mlp", input_shape=(3,), num_outputs=1).tasks == {"regression", "classification"}
    assert build("cnn", input_shape=(1, 8, 8), num_outputs=10).modalities == {"image"}


# ----- specific behaviour ---------------------------------------------------------------------
def test_linear_exposes_weight_and_bias():
    model = build("linear", input_shape=(3,), num_outputs=1)
    with torch.no_grad():
        model.linear.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]]))
        model.linear.bias.fill_(3.0)
    x = torch.randn(5, 3)
    torch.testing.assert_close(model(x), x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 3.0)


def test_mlp_is_the_textbook_network():
    from pipeline.models.mlp import MLP

    model = MLP((10,), 1, hidden_dims=[20])
    state = model.state_dict()
    assert list(state) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert state["fc1.weight"].shape == (20, 10) and state["fc2.weight"].shape == (1, 20)
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]


def test_mlp_with_batch_norm_and_dropout():
    model = build("mlp", input_shape=(1, 8, 8), num_outputs=10, batch_norm=True, dropout=0.2, activation="gelu")
    assert_trains(model, torch.randn(4, 1, 8, 8), 10)


def test_resnet_width_and_stem():
    model = build("resnet", input_shape=(3, 32, 32), num_outputs=10, width=16)
    assert model.conv1.stride == (1, 1) and model.conv1.kernel_size == (3, 3)
    assert model.layer4[0].conv1.out_channels == 128
    assert_trains(model, torch.randn(2, 3, 32, 32), 10)


@pytest.mark.parametrize("name,overrides", [("bow", {}), ("textcnn", {}), ("rnn", {}), ("rnn", {"cell": "lstm"})])
def test_text_models_ignore_trailing_padding(name, overrides):
    torch.manual_seed(0)
    model = build_text(name, **overrides).eval()
    short = padded_tokens([7, 3, 1, 0], total_length=12)
    long = torch.cat([short, torch.full((4, 20), PAD_ID)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(short), model(long))


def test_bow_bigrams_matter():
    model = build_text("bow").eval()
    tokens = padded_tokens([6])
    swapped = tokens.clone()
    swapped[0, [0, 1]] = tokens[0, [1, 0]]  # same unigrams, different bigrams
    with torch.no_grad():
        assert not torch.allclose(model(tokens), model(swapped))


def test_bad_choices_name_the_config_key():
    from pipeline.models.mlp import MLP
    from pipeline.models.text import RNNClassifier

    with pytest.raises(ValueError, match="model.activation"):
        MLP((10,), 1, activation="swish")
    with pytest.raises(ValueError, match="model.cell"):
        RNNClassifier((TEXT_LENGTH,), 2, vocab_size=VOCAB_SIZE, cell="transformer")
    # hydra wraps the error in its InstantiationException; the message still names the key
    with pytest.raises(Exception, match="model.cell"):
        build_text("rnn", cell="transformer")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_rnn_matches_packed_bidirectional_rnn(cell):
    """Per-direction unpacked layers compute exactly what PyTorch's packed bidirectional RNN does."""
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    model = build_text("rnn", cell=cell, num_layers=2, embed_dim=8, hidden_dim=6).eval()
    reference = getattr(torch.nn, cell.upper())(8, 6, num_layers=2, bidirectional=True, batch_first=True)
    for name, param in reference.named_parameters():  # e.g. weight_hh_l1_reverse
        base, layer = name.removesuffix("_reverse").rsplit("_l", 1)
        direction = model.layers[int(layer)][int(name.endswith("_reverse"))]
        with torch.no_grad():
            param.copy_(direction.get_parameter(f"{base}_l0"))
    tokens = padded_tokens([9, 4, 1, 0], total_length=12)
    lengths = (tokens != PAD_ID).sum(1).clamp(min=1)
    packed = pack_padded_sequence(model.embedding(tokens), lengths, batch_first=True, enforce_sorted=False)
    _, hidden = reference(packed)
    hidden = hidden[0] if cell == "lstm" else hidden
    expected = model.linear(torch.cat([hidden[-2], hidden[-1]], dim=1))
    with torch.no_grad():
        torch.testing.assert_close(model(tokens), expected)


@pytest.mark.parametrize("num_classes", [2, 3])
def test_validation_loss_leaves_label_smoothing_out(num_classes):
    """val/loss compares runs with different label smoothing (a swept value) on one measure: plain cross-entropy."""
    from pipeline.tasks import ClassificationModule as ClassificationObjective

    torch.manual_seed(0)
    logits = torch.randn(16, 1 if num_classes == 2 else num_classes)
    target = torch.randint(0, num_classes, (16,))
    plain, smoothed = (ClassificationObjective(torch.nn.Identity(), optimizer=None, num_classes=num_classes,
                                               label_smoothing=s) for s in (0.0, 0.2))
    assert smoothed.loss(logits, target) != plain.loss(logits, target)  # training does use it
    assert torch.equal(smoothed.evaluation_loss(logits, target), plain.loss(logits, target))


@pytest.mark.parametrize("num_classes", [2, 3])
def test_class_weights_weigh_the_training_loss_as_scikit_learn_weighs_log_loss(num_classes):
    """task.class_weights: the training loss is the weighted mean sum(w_y * loss) / sum(w_y) (scikit-learn's
    log_loss with sample_weight); val/loss and test/loss stay plain cross-entropy."""
    from sklearn.metrics import log_loss

    from pipeline.tasks import ClassificationModule

    torch.manual_seed(0)
    logits = torch.randn(40, 1 if num_classes == 2 else num_classes, dtype=torch.float64)
    target = torch.randint(0, num_classes, (40,))
    weights = [0.5, 4.0, 2.0][:num_classes]
    module = ClassificationModule(torch.nn.Identity(), optimizer=None, num_classes=num_classes, class_weights=weights)
    plain = ClassificationModule(torch.nn.Identity(), optimizer=None, num_classes=num_classes)
    probabilities = module.probabilities(logits).numpy()
    if num_classes == 2:
        probabilities = np.stack([1 - probabilities, probabilities], axis=1)
    expected = log_loss(target.numpy(), probabilities, sample_weight=np.asarray(weights)[target.numpy()],
                        labels=list(range(num_classes)))
    assert float(module.loss(logits, target)) == pytest.approx(expected, rel=1e-6)
    assert float(module.evaluation_loss(logits, target)) == pytest.approx(float(plain.loss(logits, target)), rel=1e-9)
    assert "class_weight" not in module.state_dict()  # checkpoints stay loadable by runs without weights


def test_class_weights_settings_and_their_refusals():
    from pipeline.data.base import DataSpec
    from pipeline.errors import ConfigError
    from pipeline.tasks.classification import class_weights

    spec = DataSpec((3,), 1, "classification", num_classes=2, class_names=["no", "yes"], extra={"class_counts": [90, 10]})
    assert class_weights(None, spec) is None
    assert class_weights("balanced", spec) == pytest.approx([100 / 180, 100 / 20])  # n / (k * n_c)
    assert class_weights([1, 3], spec) == [1.0, 3.0]
    assert class_weights(OmegaConf.create({"yes": 5}), spec) == [1.0, 5.0]
    numbered = DataSpec((3,), 3, "classification", num_classes=3, class_names=["0", "1", "2"])
    assert class_weights(OmegaConf.create({2: 4}), numbered) == [1.0, 1.0, 4.0]  # Hydra reads {2: 4} with an int key
    for setting, message in (("inverse", "is not a weighting"), ([1, 2, 3], "3 weights for 2 classes"),
                             ({"maybe": 2}, "names ['maybe'], not classes"), ([1, 0], "must be a finite number > 0"),
                             (["a", 1], "must be numbers")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            class_weights(setting, spec)
    with pytest.raises(ConfigError, match="needs the training split's class counts"):
        class_weights("balanced", numbered)


def test_categorical_embedding_trains_on_its_weights_and_answers_unseen_codes_with_the_mean():
    """In training the table is the weights as they are (training rows never hold the code 0 of a column no
    training row had): outputs and gradients equal the averaging path's bit for bit, without recomputing it every
    step. In evaluation that code reads the mean of its column's category vectors."""
    from pipeline.models.categorical import CategoricalEmbedding

    torch.manual_seed(0)
    cards = [5, 9, 3, 4]
    embed = CategoricalEmbedding(2 + len(cards), cards, 4, unknown_seen=[False, True, False, True])
    x = torch.cat([torch.randn(32, 2)] + [torch.randint(int(i % 2 == 0), c, (32, 1)).float()
                                           for i, c in enumerate(cards)], 1)
    codes = x[:, 2:].long() + embed.offsets
    gradients = []
    for averaged in (False, True):
        embed.embedding.weight.grad = None
        out = (torch.cat([x[:, :2], torch.nn.functional.embedding(codes, embed.table()).flatten(1)], 1) if averaged
               else embed.train()(x))
        out.pow(2).sum().backward()
        gradients.append((out.detach(), embed.embedding.weight.grad.clone()))
    assert all(torch.equal(a, b) for a, b in zip(*gradients))
    unseen = x[:1].clone()
    unseen[0, 2] = 0  # column 0's code 0: no training row had it
    looked_up = embed.eval()(unseen)[0, 2:6]
    assert torch.allclose(looked_up, embed.embedding.weight[1:5].mean(0))
