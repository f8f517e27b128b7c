"""Plain ``nn.Module`` models. They know the shape of their inputs and outputs, never which data
set produced them.

Every model takes ``(input_shape, num_outputs, dropout=0.0, l1=0.0, ...)`` (text models also
``vocab_size`` and ``pad_id``), returns raw predictions / logits of shape ``(B, num_outputs)``,
stores ``l1`` for the training objective, and declares the ``modalities`` and ``tasks`` it
supports so an incompatible model/data choice is refused before any data is loaded.
"""
from pipeline.models.cnn import CNN
from pipeline.models.linear import LinearRegression, LogisticRegression
from pipeline.models.mlp import MLP
from pipeline.models.resnet import ResNet
from pipeline.models.text import BagOfWords, RNNClassifier, TextCNN

__all__ = [
    "BagOfWords",
    "CNN",
    "LinearRegression",
    "LogisticRegression",
    "MLP",
    "RNNClassifier",
    "ResNet",
    "TextCNN",
]
