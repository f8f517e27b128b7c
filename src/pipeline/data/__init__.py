"""The data modules (tables, images, texts) and what turns raw inputs into model inputs."""

# the data module classes whose logged model takes tensors (their ``model_takes_raw_rows()`` is False; every other
# bundled data set's model takes raw rows), listed here so that ``pipeline-train`` can tell from the composed config,
# before it imports them (torch and Lightning: ~4 s), and have the store writer import torch's exporter meanwhile
# (``pipeline.tracking.remote.warm_for_model``).
# tests/test_speed.py checks the list against every data config's class.
TENSOR_MODEL_DATA = frozenset({"pipeline.data.images.Digits"})
