"""Image and text data sets: real Fashion-MNIST and MR (from PIPELINE_DATA_DIR), generated image
folders / GLUE tables / aclImdb trees, the errors a user sees for missing or broken files,
training-split-only preprocessing, CV folds, and per-sample deterministic augmentation."""
from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from conftest import fake_fashion

from pipeline.data.base import DataError, InMemoryDataModule
from pipeline.data.image_files import ImageCSV, ImageFolder
from pipeline.data.images import CIFAR10, Digits, FashionMNIST
from pipeline.data.text import IMDB, PAD_ID, UNK_ID, MovieReviews, TextTSV

from pipeline.config import CONFIG_DIR as CONF
IMAGE_CONFIGS = ["digits", "fashion_mnist", "mnist", "cifar10", "image_folder"]
TEXT_CONFIGS = ["mr", "text_tsv", "imdb"]
MR_SIZE = 10662


def compose_data(name: str, data_dir, *overrides: str):
    """The ``data`` node of ``data=<name>`` composed from conf/ as Hydra would compose it.

    Only the data group is composed; ``paths.data_dir`` and ``seed`` stand in for the primary config."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            overrides=[f"+data={name}", f"+paths.data_dir={data_dir}", "+seed=0"]
            + [f"data.{o}" for o in overrides],
        )
    return cfg.data


def build(name: str, data_dir, *overrides: str) -> InMemoryDataModule:
    return instantiate(compose_data(name, data_dir, *overrides))


# ----- configs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", IMAGE_CONFIGS + TEXT_CONFIGS)
def test_every_config_builds_its_data_module(name, tmp_path):
    overrides = ["path=somewhere"] if name in ("image_folder", "text_tsv") else []
    dm = build(name, tmp_path, *overrides)
    assert dm.modality == ("image" if name in IMAGE_CONFIGS else "text")
    assert dm.task_kind == "classification"
    assert dm.data_dir == tmp_path and dm.seed == 0
    if name == "fashion_mnist":
        assert dm.batch_size == 128 and dm.augment is False
    if name == "mr":
        assert dm.batch_size == 64 and dm.max_length == 64
    if name == "imdb":
        assert dm.max_length == 256


# ----- digits and augmentation ----------------------------------------------------------------------
def test_digits_are_scaled_and_normalised_with_training_statistics(tmp_path):
    dm = build("digits", tmp_path)
    dm.setup()
    assert dm.train_split.x.shape[1:] == (1, 8, 8) and dm.train_split.x.dtype == torch.float32
    assert len(dm.train_split) + len(dm.val_split) + len(dm.test_split) == 1797
    assert dm.spec.input_shape == (1, 8, 8) and dm.spec.num_outputs == 10
    x = dm.train_split.x
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3
    # statistics come from the training split only: the test split is not exactly standardised
    assert abs(float(dm.test_split.x.mean())) > 1e-4
    raw = Digits().load().train.x
    assert float(raw.min()) == 0.0 and float(raw.max()) == 1.0


def test_digits_lend_their_runs_normalisation_to_an_evaluation_with_other_rows(tmp_path):
    """digits has no raw input adapter; its model spec, written for every run, carries the statistics that an
    evaluation drawing other training rows takes over (and a config that normalises otherwise cannot)."""
    from pipeline.data.base import fitted_differences, saved_fitted_state

    trained = Digits(seed=0)
    trained.setup()
    assert [p.name for p in trained.save_artifacts(tmp_path / "data")] == ["model_spec.json"]
    saved = saved_fitted_state(tmp_path / "data")
    assert saved[0] is None and saved[1]["extra"]["channel_mean"] == [float(trained.channel_mean[0])]
    other = Digits(seed=5)
    assert other.use_fitted(*saved)
    other.setup()
    assert torch.equal(other.channel_mean, trained.channel_mean) and fitted_differences(other, *saved) == []
    assert not torch.equal(other.test_split.y, trained.test_split.y)  # other rows, the same normalisation
    plain = Digits(seed=0, normalize=False)
    assert not plain.use_fitted(*saved)
    plain.setup()
    assert fitted_differences(plain, *saved) == ["model_spec.extra"]


def augmenting_digits(**kwargs) -> Digits:
    dm = Digits(augment=True, seed=3, **kwargs)
    dm.setup()
    return dm


def test_augmentation_is_per_sample_and_a_true_crop_or_flip():
    dm = augmenting_digits(crop_padding=2, hflip=True)
    image = dm.train_split.x[0]
    batch = image.expand(64, -1, -1, -1).clone()
    out = dm.augment_batch(batch, torch.Generator().manual_seed(0))
    assert out.shape == batch.shape
    distinct = torch.unique(out.reshape(64, -1), dim=0)
    assert len(distinct) > 10  # 25 offsets x 2 flips: identical inputs get different crops
    # every output is the black-padded image cropped at some offset, possibly mirrored
    black = float(dm._black(1, "cpu", torch.float32))
    padded = torch.full((1, 12, 12), black)
    padded[:, 2:10, 2:10] = image
    candidates = [padded[:, i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
    candidates += [c.flip(-1) for c in candidates]
    for sample in out:
        assert any(torch.equal(sample, c) for c in candidates)


def test_random_erasing_is_per_sample():
    dm = augmenting_digits(erasing=1.0)
    batch = dm.train_split.x[:1].expand(32, -1, -1, -1).clone()
    out = dm.augment_batch(batch, torch.Generator().manual_seed(0))
    erased = (out == 0) & (batch != 0)
    assert erased.flatten(1).any(1).all()  # probability 1: every sample loses a rectangle
    assert len(torch.unique(erased.flatten(1), dim=0)) > 5
    none = augmenting_digits(erasing=0.0, hflip=True)
    assert not ((none.augment_batch(batch, torch.Generator().manual_seed(0)) == 0) & (batch != 0)).any()


def hook_batches(dm, epochs=(0, 0, 1), training=True):
    outs = []
    for epoch in epochs:
        dm.trainer = SimpleNamespace(training=training, current_epoch=epoch, global_rank=0, world_size=1)
        x = dm.train_split.x[:16]
        outs.append(dm.on_after_batch_transfer((x, dm.train_split.y[:16]), 0)[0])
    dm.trainer = None
    return outs


def test_augmentation_hook_is_deterministic_and_only_in_training():
    first = hook_batches(augmenting_digits(crop_padding=2, hflip=True, erasing=0.5))
    second = hook_batches(augmenting_digits(crop_padding=2, hflip=True, erasing=0.5))
    for a, b in zip(first, second):
        assert torch.equal(a, b)  # a rerun with the same seed augments identically
    assert not torch.equal(first[0], first[1])  # the next batch draws new parameters
    assert not torch.equal(first[0], first[2])  # and so does the next epoch
    dm = augmenting_digits(crop_padding=2, hflip=True)
    x = dm.train_split.x[:16]
    assert all(torch.equal(out, x) for out in hook_batches(dm, training=False))
    dm.trainer = None
    assert dm.on_after_batch_transfer((x, dm.train_split.y[:16]), 0)[0] is x
    off = Digits(augment=False, crop_padding=2, hflip=True)
    off.setup()
    assert all(torch.equal(o, off.train_split.x[:16]) for o in hook_batches(off))


def test_augmentation_runs_in_lightning_training_but_not_validation(tmp_path):
    import pytorch_lightning as pl

    seen = {"train": [], "val": []}

    class Probe(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(64, 10)

        def training_step(self, batch, batch_idx):
            seen["train"].append(batch[0].clone())
            return torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

        def validation_step(self, batch, batch_idx):
            seen["val"].append(batch[0].clone())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    dm = Digits(augment=True, erasing=1.0, batch_size=32, seed=5)
    dm.setup()
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=str(tmp_path),
    )
    trainer.fit(Probe(), datamodule=dm)
    order = torch.randperm(len(dm.train_split), generator=torch.Generator().manual_seed(5))
    first_raw = dm.train_split.x[order[:32]]
    assert seen["train"][0].shape == first_raw.shape and not torch.equal(seen["train"][0], first_raw)
    assert torch.equal(seen["val"][0], dm.val_split.x[:1024])


# ----- idx files (Fashion-MNIST / MNIST) --------------------------------------------------------
def test_fashion_mnist_real_files_parse_fast_with_official_split(real_data_dir):
    start = time.perf_counter()
    data = FashionMNIST(data_dir=str(real_data_dir), download=False).load()
    seconds = time.perf_counter() - start
    print(f"Fashion-MNIST full parse: {seconds:.2f} s")
    assert seconds < 15  # ~0.6 s on a laptop core; the bound leaves room for a slow CI machine
    assert data.train.x.shape == (60000, 1, 28, 28) and data.test.x.shape == (10000, 1, 28, 28)
    assert data.train.x.dtype == torch.float32
    assert float(data.train.x.min()) == 0.0 and float(data.train.x.max()) == 1.0
    assert torch.equal(torch.bincount(data.train.y), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(data.test.y), torch.full((10,), 1000))
    assert data.class_names[0] == "T-shirt/top" and len(data.class_names) == 10


def test_fashion_mnist_config_sets_up_with_limited_rows(real_data_dir):
    dm = build("fashion_mnist", real_data_dir, "limit_rows=2000")
    dm.setup()
    assert len(dm.test_split) == 2000  # the official test split, limited
    assert len(dm.train_split) + len(dm.val_split) == 2000 and len(dm.val_split) == 200
    assert dm.spec.input_shape == (1, 28, 28) and dm.spec.num_outputs == 10
    assert abs(float(dm.train_split.x.mean())) < 1e-4
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (128, 1, 28, 28) and y.dtype == torch.long and int(y.max()) <= 9


def test_fashion_mnist_torchvision_layout_and_decompressed_files(tmp_path):
    fake_fashion(tmp_path / "FashionMNIST" / "raw")
    # torchvision keeps both the .gz and the decompressed file; either is read
    raw = tmp_path / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((raw.parent / (raw.name + ".gz")).read_bytes()))
    (raw.parent / (raw.name + ".gz")).unlink()
    data = FashionMNIST(data_dir=str(tmp_path), download=False).load()
    assert data.train.x.shape == (30, 1, 28, 28) and data.test.x.shape == (10, 1, 28, 28)
    assert data.test.y.tolist() == list(range(10))


def test_truncated_gz_names_the_file(tmp_path, real_data_dir):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for source in (real_data_dir / "fashion-mnist").glob("*.gz"):
        (folder / source.name).symlink_to(source)
    broken = folder / "train-images-idx3-ubyte.gz"
    broken.unlink()
    broken.write_bytes((real_data_dir / "fashion-mnist" / broken.name).read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or corrupt") as error:
        FashionMNIST(data_dir=str(tmp_path), download=False).load()
    assert str(broken) in str(error.value) and "re-download" in str(error.value)


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda raw: b"\x00\x00\x08\x01" + raw[4:], "magic number"),  # labels header on an image file
        (lambda raw: raw[:-5], "bytes, expected"),  # complete gzip stream, short payload
        (lambda raw: b"not a gzip file at all", "truncated or corrupt"),
    ],
)
def test_corrupt_idx_files_are_refused(tmp_path, damage, reason):
    fake_fashion(tmp_path / "fashion-mnist")
    path = tmp_path / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    damaged = damage(raw)
    path.write_bytes(damaged if damaged.startswith(b"not") else gzip.compress(damaged))
    with pytest.raises(DataError, match=reason) as error:
        FashionMNIST(data_dir=str(tmp_path), download=False).load()
    assert str(path) in str(error.value)


def test_missing_fashion_mnist_lists_every_place_looked(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(DataError) as error:
        FashionMNIST(data_dir=str(tmp_path), download=True).load()
    message = str(error.value)
    for place in (tmp_path / "fashion-mnist", tmp_path / "FashionMNIST" / "raw", "/usr/share/datasets/fashion-mnist"):
        assert str(place) in message
    assert "https://github.com/zalandoresearch/fashion-mnist" in message
    assert "dataset-fashion-mnist" in message and "Error downloading" in message
    with pytest.raises(DataError, match="data.download=false"):
        FashionMNIST(data_dir=str(tmp_path), download=False).load()


def test_missing_cifar10_says_where_and_the_url(tmp_path):
    with pytest.raises(DataError) as error:
        CIFAR10(data_dir=str(tmp_path), download=False).load()
    message = str(error.value)
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message


# ----- image folders -------------------------------------------------------------------------------
def write_pngs(root: Path, classes=("cat", "dog"), per_class=6, size=(12, 10)) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            pixels[..., index % 3] = 255  # each class has its own dominant colour
            Image.fromarray(pixels).save(root / name / f"{i:03d}.png")


def test_image_folder_loads_resized_images_with_folder_class_names(tmp_path):
    write_pngs(tmp_path / "pets")
    dm = build("image_folder", tmp_path, f"path={tmp_path / 'pets'}", "image_size=8", "test_fraction=0.25")
    dm.setup()  # streamed (random crops are drawn per image): the splits are rows of the file list
    assert dm.spec.class_names == ["cat", "dog"] and dm.spec.input_shape == (3, 8, 8)
    assert sum(len(rows) for rows in dm.rows.values()) == 12 and dm.train_split is None
    assert dm.load().train.y.tolist() == [0] * 6 + [1] * 6
    # read into memory with no normalisation: each class keeps its saturated colour channel at 8x8
    memory = build("image_folder", tmp_path, f"path={tmp_path / 'pets'}", "image_size=8", "in_memory=true",
                   "augment=false", "normalization=none", "num_workers=0")
    memory.setup()
    for split in (memory.train_split, memory.val_split, memory.test_split):
        assert split.x.shape[1:] == (3, 8, 8)
        assert torch.all(split.x[split.y == 0, 0] == 1.0) and torch.all(split.x[split.y == 1, 1] == 1.0)
    grey = ImageFolder(path=str(tmp_path / "pets"), image_size=5, channels=1, in_memory=True, augment=False,
                       num_workers=0)
    grey.setup()
    assert grey.train_split.x.shape[1:] == (1, 5, 5) and grey.spec.input_shape == (1, 5, 5)


def test_image_folder_with_train_test_subfolders(tmp_path):
    write_pngs(tmp_path / "d" / "train", per_class=5)
    write_pngs(tmp_path / "d" / "test", classes=("dog",), per_class=2)
    data = ImageFolder(path=str(tmp_path / "d"), image_size=4).load()
    assert len(data.train) == 10 and data.test.y.tolist() == [1, 1] and data.val is None


def test_split_folders_are_found_whatever_their_case(tmp_path):
    """Train/ and Val/ (a Windows export) were taken as two classes, 'Train' and 'Val', without a word."""
    write_pngs(tmp_path / "d" / "Train", per_class=5)
    write_pngs(tmp_path / "d" / "Val", classes=("dog",), per_class=2)
    data = ImageFolder(path=str(tmp_path / "d"), image_size=4).load()
    assert data.class_names == ["cat", "dog"]
    assert len(data.train) == 10 and data.test.y.tolist() == [1, 1] and data.val is None


def test_kaggle_split_folders_are_splits_and_unknown_ones_are_warned_of(tmp_path, caplog):
    """Training/ and Testing/ (Kaggle's names) were two classes, 'Testing' and 'Training', without a word: a model
    of which split an image came from. They are splits now; split folders under names not known (seg_train/,
    seg_test/) stay classes, with a warning that names the shared sub-folders."""
    write_pngs(tmp_path / "kaggle" / "Training", per_class=5)
    write_pngs(tmp_path / "kaggle" / "Testing", classes=("dog",), per_class=2)
    data = ImageFolder(path=str(tmp_path / "kaggle"), image_size=4).load()
    assert data.class_names == ["cat", "dog"]
    assert len(data.train) == 10 and data.test.y.tolist() == [1, 1] and data.val is None
    write_pngs(tmp_path / "intel" / "seg_train", per_class=3)
    write_pngs(tmp_path / "intel" / "seg_test", per_class=2)
    with caplog.at_level("WARNING"):
        data = ImageFolder(path=str(tmp_path / "intel"), image_size=4).load()
    assert data.class_names == ["seg_test", "seg_train"]
    assert "hold no image of their own but the same sub-folders (cat, dog)" in caplog.text
    # classes with sub-folders of their own, and an image beside them: no warning
    caplog.clear()
    write_pngs(tmp_path / "years" / "cat", classes=("2020", "2021"), per_class=2)
    write_pngs(tmp_path / "years" / "dog", classes=("2020", "2021"), per_class=2)
    (tmp_path / "years" / "dog" / "loose.png").write_bytes((tmp_path / "years" / "dog" / "2020" / "000.png").read_bytes())
    with caplog.at_level("WARNING"):
        ImageFolder(path=str(tmp_path / "years"), image_size=4).load()
    assert "same sub-folders" not in caplog.text


def test_test_images_that_are_training_images_are_counted(tmp_path, caplog):
    """data.test_path naming the training folder itself, or a listing with a file in both splits: the test metrics
    were read on training images without a word. The data line now counts them; a file listed with two labels
    gets a warning."""
    write_pngs(tmp_path / "d", per_class=6)
    data = ImageFolder(path=str(tmp_path / "d"), test_path=str(tmp_path / "d"), image_size=4, num_workers=0)
    data.setup()
    assert [len(data.rows[part]) for part in ("train", "val", "test")] == [11, 1, 12]
    assert any(note.startswith("11 test images (91.7%) are also training images") for note in data.split_notes)
    (tmp_path / "labels.csv").write_text("path,label,split\n" + "".join(
        f"d/{name}/{i:03d}.png,{name},{'test' if i == 5 else 'train'}\n" for name in ("cat", "dog") for i in range(6))
        + "d/cat/000.png,cat,test\nd/dog/001.png,cat,train\n")
    listed = ImageCSV(path=str(tmp_path / "labels.csv"), image_size=4, num_workers=0)
    with caplog.at_level("WARNING"):
        listed.setup()
    assert any(note.startswith("1 test image (33.3%) is also a training image (the same file)")
               for note in listed.split_notes), listed.split_notes
    assert "1 image file(s) listed with two labels, e.g. d/dog/001.png as 'dog' and 'cat'" in caplog.text
    # a data.test_path labelling a file of the listing otherwise: said as that, not as the listing's own file with two
    # labels that "the model is taught both" (the test file's label is only tested against)
    (tmp_path / "clean.csv").write_text("path,label\n" + "".join(
        f"d/{name}/{i:03d}.png,{name}\n" for name in ("cat", "dog") for i in range(6)))
    (tmp_path / "test.csv").write_text("path,label\nd/cat/002.png,dog\nd/dog/003.png,dog\n")
    caplog.clear()
    with caplog.at_level("WARNING"):
        ImageCSV(path=str(tmp_path / "clean.csv"), test_path=str(tmp_path / "test.csv"), image_size=4,
                 num_workers=0).setup()
    assert "listed with two labels" not in caplog.text, caplog.text
    assert (f"{tmp_path / 'test.csv'} (data.test_path): 1 image file(s) labelled otherwise than in "
            f"{tmp_path / 'clean.csv'}, e.g. d/cat/002.png as 'cat' there and 'dog' here") in caplog.text, caplog.text


def test_a_truncated_bmp_is_said_to_be_truncated(tmp_path):
    """torchvision reads JPEG, PNG, WebP and GIF; for a broken BMP (PIL's format) its "Unsupported image file.
    Only jpeg, png, ..." was the reason given, cut mid-word, for a format the docs list as supported."""
    from PIL import Image

    from pipeline.data.raw_inputs import UnreadableImage, decode_image_file

    Image.new("RGB", (50, 50), (200, 10, 10)).save(tmp_path / "whole.bmp")
    (tmp_path / "cut.bmp").write_bytes((tmp_path / "whole.bmp").read_bytes()[:4000])
    assert decode_image_file(str(tmp_path / "whole.bmp"), 3).shape == (3, 50, 50)
    with pytest.raises(UnreadableImage, match="truncated") as raised:
        decode_image_file(str(tmp_path / "cut.bmp"), 3)
    assert "Unsupported" not in str(raised.value)


def test_a_link_back_up_the_folder_is_read_once(tmp_path):
    """os.walk follows links: `ln -s . self` listed each image 40 times (in train and test), `ln -s .. up` hung."""
    write_pngs(tmp_path / "d", per_class=4)
    (tmp_path / "d" / "cat" / "self").symlink_to(".")
    (tmp_path / "d" / "dog" / "up").symlink_to("..")
    data = ImageFolder(path=str(tmp_path / "d"), image_size=4).load()
    assert len(data.train) == 8 and data.class_names == ["cat", "dog"]


def test_image_folder_missing_or_empty_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        ImageFolder(path=str(tmp_path / "nope")).load()
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="no images in"):
        ImageFolder(path=str(tmp_path / "empty")).load()
    (tmp_path / "broken" / "cat").mkdir(parents=True)
    (tmp_path / "broken" / "cat" / "a.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a.png: cannot read"):
        ImageFolder(path=str(tmp_path / "broken")).load()


# ----- movie reviews (MR) ------------------------------------------------------------------------
def words(dm, text: str) -> list[str]:
    normalized = dm.tokenizer.normalizer.normalize_str(text)
    return [w for w, _ in dm.tokenizer.pre_tokenizer.pre_tokenize_str(normalized)]


def test_mr_loads_and_tokenizes_with_training_split_vocabulary(real_data_dir):
    start = time.perf_counter()
    dm = build("mr", real_data_dir)
    dm.setup()
    print(f"MR load + tokenizer training + encoding: {time.perf_counter() - start:.2f} s")
    assert len(dm.train_split) + len(dm.val_split) + len(dm.test_split) == MR_SIZE
    assert len(dm.texts) == MR_SIZE
    for split in (dm.train_split, dm.val_split, dm.test_split):
        assert split.x.dtype == torch.long and split.x.shape[1] == 64
    spec = dm.spec
    assert spec.input_shape == (64,) and spec.num_outputs == 1 and spec.class_names == ["negative", "positive"]
    assert spec.extra["pad_id"] == PAD_ID == 0 and spec.vocab_size == dm.tokenizer.get_vocab_size()
    assert int(dm.train_split.x.max()) < spec.vocab_size
    assert torch.bincount(torch.cat([dm.train_split.y, dm.val_split.y, dm.test_split.y])).tolist() == [5331, 5331]
    # the vocabulary is exactly the words of the training split (vocab_size is not binding here)
    train_words = {w for text in dm.texts_of(dm.row_index["train"]) for w in words(dm, text)}
    assert set(dm.tokenizer.get_vocab()) == train_words | {"[PAD]", "[UNK]"}
    # a word only the test split holds maps to [UNK]
    found = 0
    for row, text in zip(dm.test_split.x, dm.texts_of(dm.row_index["test"])):
        tokens = words(dm, text)[:64]
        for position, word in enumerate(tokens):
            if word not in train_words:
                assert dm.tokenizer.token_to_id(word) is None and int(row[position]) == UNK_ID
                found += 1
        assert (row[len(tokens) :] == PAD_ID).all()
    assert found > 50


def test_mr_ten_fold_cv_partitions_the_sentences(real_data_dir):
    test_rows = []
    for fold in range(10):
        dm = MovieReviews(data_dir=str(real_data_dir), cv_folds=10, fold=fold, seed=1, vocab_size=2000)
        dm.setup()
        rows = dm.row_index
        assert sum(len(r) for r in rows.values()) == MR_SIZE
        assert len(torch.cat(list(rows.values())).unique()) == MR_SIZE
        assert len(dm.test_split) == len(rows["test"]) in (1066, 1067)
        assert dm.spec.vocab_size == 2000
        test_rows.append(rows["test"])
    everything = torch.cat(test_rows)
    assert len(everything) == MR_SIZE and len(everything.unique()) == MR_SIZE


def test_mr_latin1_copy_reads_the_same(tmp_path, real_data_dir):
    (tmp_path / "mr").mkdir()
    for name in ("rt-polarity.pos", "rt-polarity.neg"):
        text = (real_data_dir / "mr" / name).read_text(encoding="utf-8")
        # the original archive's encoding: ISO 8859-1 plus Windows-1252's dashes, quotes, ellipses
        encoded = text.encode("cp1252")
        with pytest.raises(UnicodeDecodeError):
            encoded.decode("utf-8")
        (tmp_path / "mr" / name).write_bytes(encoded)
    utf8 = MovieReviews(data_dir=str(real_data_dir), download=False)
    utf8.load()
    latin = MovieReviews(data_dir=str(tmp_path), download=False)
    latin.load()
    assert latin.texts == utf8.texts and len(latin.texts) == MR_SIZE
    assert any("é" in t for t in latin.texts)


def test_mr_missing_names_places_and_url(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as error:
        MovieReviews(data_dir=str(tmp_path), download=True).load()
    message = str(error.value)
    assert str(tmp_path / "mr") in message and "rt-polarity.pos" in message
    assert "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz" in message
    assert "Name or service not known" in message


def test_mr_empty_file_is_named(tmp_path):
    (tmp_path / "mr").mkdir()
    (tmp_path / "mr" / "rt-polarity.pos").write_text("")
    (tmp_path / "mr" / "rt-polarity.neg").write_text("a bad film\n")
    with pytest.raises(DataError, match="rt-polarity.pos: the file is empty"):
        MovieReviews(data_dir=str(tmp_path), download=False).load()


def test_tokenizer_artifact_reloads_to_the_same_encoding(tmp_path):
    write_glue(tmp_path / "glue")
    dm = TextTSV(path=str(tmp_path / "glue"), max_length=12)
    dm.setup()
    path, *rest = dm.save_artifacts(tmp_path / "artifacts")
    assert path.name == "tokenizer.json"
    assert [p.name for p in rest] == ["preprocessing.json", "model_spec.json"]  # pipeline-predict <checkpoint> reads them
    from tokenizers import Tokenizer

    reloaded = Tokenizer.from_file(str(path))
    text = 'a "great" film , unseenword'
    assert reloaded.encode(text).ids == dm.encode([text])[0].tolist()
    assert len(reloaded.encode(text).ids) == 12
    assert '"[UNK]"' in dm.tokenizer_json()


# ----- GLUE-style tables and aclImdb ----------------------------------------------------------------
def write_glue(root: Path, n_train=20) -> None:
    root.mkdir(parents=True)
    train = ["sentence\tlabel"] + [
        f'{"a great" if i % 2 else "a dull"} "film" number {i} \t{i % 2}' for i in range(n_train)
    ]
    dev = ["sentence\tlabel"] + [f"{'great' if i % 2 else 'dull'} dev {i}\t{i % 2}" for i in range(6)]
    test = ["index\tsentence"] + [f"{i}\tan unlabelled sentence {i}" for i in range(4)]
    for name, lines in (("train", train), ("dev", dev), ("test", test)):
        (root / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_text_tsv_reads_a_glue_folder(tmp_path):
    write_glue(tmp_path / "SST-2")
    dm = build("text_tsv", tmp_path, f"path={tmp_path / 'SST-2'}", "max_length=8")
    dm.setup()
    assert dm.spec.class_names == ["0", "1"] and dm.spec.input_shape == (8,)
    assert len(dm.val_split) == 6  # dev.tsv is the validation split
    assert len(dm.train_split) + len(dm.test_split) == 20  # test.tsv has no labels: held out of train
    assert '"film" number 0' in dm.texts[0]  # bare quotes survive (no CSV quoting in .tsv)
    assert dm.tokenizer.token_to_id("dev") is None  # dev words are not in the vocabulary


@pytest.mark.parametrize("in_memory", [True, False])
def test_limit_rows_takes_rows_of_every_class_from_a_sorted_file_and_limits_the_dev_file(tmp_path, in_memory):
    """data.limit_rows used to take a file's first rows: a train.tsv sorted by label gave one class, and the test
    split drawn from it scored acc 1.0; the dev file was not limited at all."""
    root = tmp_path / "sorted"
    root.mkdir()
    for name, count in (("train", 300), ("dev", 120)):
        lines = ["sentence\tlabel"] + [f"{'dull' if i < count // 2 else 'great'} {name} {i}\t{int(i >= count // 2)}"
                                       for i in range(count)]
        (root / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dm = build("text_tsv", tmp_path, f"path={root}", "limit_rows=40", f"in_memory={str(in_memory).lower()}")
    dm.setup()
    labels = {name: getattr(dm, f"{name}_split").y.tolist() for name in ("train", "val", "test")}
    assert len(labels["val"]) == 40 and len(labels["train"]) + len(labels["test"]) == 40
    for name in ("train", "val"):
        assert 10 < sum(labels[name]) < len(labels[name]) - 5, (name, labels[name])
    assert set(labels["test"]) == {0, 1}
    again = build("text_tsv", tmp_path, f"path={root}", "limit_rows=40", f"in_memory={str(in_memory).lower()}")
    again.setup()  # seeded: the same rows every time
    assert {name: getattr(again, f"{name}_split").y.tolist() for name in labels} == labels


def test_a_utf8_file_with_one_windows_1252_line_reads_alike_in_memory_and_streamed(tmp_path):
    """One stray Windows-1252 byte made the in-memory reader decode the whole file as Windows-1252 (every UTF-8
    "café" became "cafÃ©") while the streamed reader, line by line, kept the UTF-8 lines as they are."""
    root = tmp_path / "mixed"
    root.mkdir()
    lines = ["sentence\tlabel"] + [f"{'a café film' if i % 2 else 'a dull naïve film'} {i}\t{i % 2}" for i in range(60)]
    data = "\n".join(lines).encode("utf-8") + "\nan old \u201cquoted\u201d review\t1\n".encode("cp1252")
    (root / "train.tsv").write_bytes(data)
    vocabularies = []
    for in_memory in ("true", "false"):
        dm = build("text_tsv", tmp_path, f"path={root}", f"in_memory={in_memory}", "val_fraction=0", "test_fraction=0.1")
        dm.setup()
        vocabulary = dm.tokenizer.get_vocab()
        assert "café" in vocabulary and "naïve" in vocabulary and "cafã" not in vocabulary, in_memory
        vocabularies.append(vocabulary)
    assert vocabularies[0] == vocabularies[1]


def test_the_lines_read_as_windows_1252_are_counted_of_the_lines_the_file_has(tmp_path, caplog):
    """A file ending with a newline has as many lines as newlines (the empty text after the last one was counted)."""
    import logging

    from pipeline.data.text_stream import decode_text

    data = "sentence\tlabel\n".encode() + "a na\u00efve film\t1\n".encode("cp1252") + "fine\t0\n".encode()
    with caplog.at_level(logging.INFO, logger="pipeline.data.text_stream"):
        assert decode_text(tmp_path / "mixed.tsv", data) == "sentence\tlabel\na na\u00efve film\t1\nfine\t0\n"
    assert "is not all UTF-8: 1 of its 3 lines read as Windows-1252" in caplog.text, caplog.text


def test_text_tsv_row_without_label_names_file_and_line(tmp_path):
    write_glue(tmp_path / "glue")
    train = tmp_path / "glue" / "train.tsv"
    lines = train.read_text().splitlines()
    lines[4] = "a sentence with no label"
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{train}:5: expected 2 columns"):
        TextTSV(path=str(tmp_path / "glue")).load()
    lines[4] = "a sentence with an empty label\t"
    train.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"{train}:5: missing label in column 'label'"):
        TextTSV(path=str(tmp_path / "glue")).load()
    dev = tmp_path / "glue" / "dev.tsv"
    dev.write_text("sentence\tlabel\nfine\t0\nodd\tneutral\n")
    train.write_text("sentence\tlabel\nx\t0\ny\t1\n")
    with pytest.raises(DataError, match=rf"{dev}:3: label 'neutral' does not occur"):
        TextTSV(path=str(tmp_path / "glue")).load()


def test_text_csv_with_quoted_commas_and_named_columns(tmp_path):
    root = tmp_path / "reviews"
    root.mkdir()
    rows = ["review,stars"] + [f'"good, really good {i}",pos' if i % 2 else f'"bad, so bad {i}",neg' for i in range(10)]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    data = TextTSV(path=str(root), text_column="review", label_column="stars").load()
    assert data.class_names == ["neg", "pos"] and data.train.y.tolist() == [0, 1] * 5
    with pytest.raises(DataError, match="no column 'sentence'"):
        TextTSV(path=str(root)).load()


def test_text_cv_folds_with_a_fixed_dev_split(tmp_path):
    write_glue(tmp_path / "glue")
    dm = TextTSV(path=str(tmp_path / "glue"), cv_folds=2, fold=1)
    dm.setup()  # train + dev are pooled and folded: row numbers concatenate like any tensor
    assert len(dm.train_split) + len(dm.val_split) + len(dm.test_split) == 26


def write_imdb(root: Path, per_class=4) -> None:
    for part in ("train", "test"):
        for label in ("pos", "neg"):
            folder = root / part / label
            folder.mkdir(parents=True)
            for i in range(per_class):
                word = "wonderful" if label == "pos" else "awful"
                (folder / f"{i}_{7 if label == 'pos' else 2}.txt").write_text(
                    f"A {word} movie.<br /><br />Review {part} {i}."
                )
    (root / "train" / "unsup").mkdir()


def test_imdb_reads_an_acl_imdb_tree(tmp_path):
    write_imdb(tmp_path / "aclImdb")
    dm = build("imdb", tmp_path, "val_fraction=0.25")
    dm.setup()
    assert len(dm.test_split) == 8 and len(dm.train_split) + len(dm.val_split) == 8
    assert dm.spec.input_shape == (256,) and dm.spec.class_names == ["negative", "positive"]
    assert not any("<br" in t for t in dm.texts)
    positives = [t for t, y in zip(dm.texts_of(dm.row_index["test"]), dm.test_split.y) if y == 1]
    assert positives and all("wonderful" in t for t in positives)
    # the model logged for a review file as written sees what training saw: "<br />" replaced by a space
    adapter = type(dm.raw_input_adapter()).from_dict(dm.raw_input_adapter().to_dict())
    raw = (tmp_path / "aclImdb" / "test" / "pos" / "0_7.txt").read_text()
    assert "<br />" in raw and torch.equal(adapter.transform(pd.DataFrame({"text": [raw]})),
                                           dm.encode([raw.replace("<br />", " ").strip()]))
    with pytest.raises(DataError, match="aclImdb_v1.tar.gz"):
        IMDB(data_dir=str(tmp_path / "elsewhere")).load()
    shutil.rmtree(tmp_path / "aclImdb" / "train" / "neg")
    with pytest.raises(DataError, match=r"no reviews in .*train/neg"):
        IMDB(path=str(tmp_path / "aclImdb")).load()


@pytest.mark.parametrize("args,said", [
    (["data.erasing=0.5", "data.hflip=true"], "data.hflip=true, data.erasing=0.5 not used: training-time augmentation "
                                              "is off (data.augment=false); add data.augment=true"),
    (["data.augment=true", "data.erasing=0.5"], None),
])
def test_augmentation_values_without_data_augment_are_said_to_be_unused(store, args, said):
    """data.erasing / data.hflip without data.augment=true trained bit for bit as a run without them, silently."""
    from conftest import run_cli_in_process

    result = run_cli_in_process(["task=image_classification", *args, "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = result.stdout + result.stderr
    if said:
        assert printed.count(said) == 1, printed[-3000:]
    else:
        assert "not used: training-time augmentation" not in printed
