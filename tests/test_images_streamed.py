"""Image files at real resolution, streamed through DataLoader workers, and pretrained torchvision models.

Through the real CLI on small generated PNG/JPEG folders (grey, RGBA, palette, CMYK, an EXIF-rotated JPEG,
unreadable files, a one-class folder, the train/ + val/ layout): exit codes, the one-line errors, the split
sizes printed, metrics and the MLflow store. Streamed and in-memory give the same metrics on the same images;
a run interrupted with Ctrl-C and resumed from last.ckpt gives the uninterrupted run's metrics; a torchvision
model loads a state-dict file the test writes; missing cached weights are refused before any run exists.
"""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np
import pytest
import torch

from conftest import (PROJECT_ROOT, compose_for_train, error_line, eval_cli, fake_fashion, load_pyfunc, new_store,
                      predict_cli, run_cli, run_cli_in_process, runs_in, store_overrides)

# a small CNN on 16-px images: a few seconds per run
FAST = ["task=image_classification", "model=cnn", "model.channels=[8,16]", "model.hidden_dim=16",
        "data.image_size=16", "data.batch_size=8", "data.eval_batch_size=16", "logger.mlflow.log_plots=false",
        "logger.mlflow.log_model=false"]
BRIGHT, DARK = (150, 256), (0, 100)  # the two classes differ in brightness, so grey copies keep the label


def pixels(rng, height: int, width: int, levels: tuple[int, int]) -> np.ndarray:
    return rng.integers(*levels, size=(height, width, 3), dtype=np.uint8)


def save(image, path: Path, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **options)
    return path


def exif_rotated_jpeg(path: Path, array: np.ndarray) -> Path:
    """A JPEG stored ``array.shape`` wide/high whose EXIF says: rotate 90 degrees to display (orientation 6)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    return save(Image.fromarray(array), path, exif=exif.tobytes())


def write_class(folder: Path, count: int, levels, rng, modes: bool = False) -> None:
    """``count`` RGB images of various sizes; with ``modes`` also grey, RGBA, palette, CMYK and EXIF-rotated."""
    from PIL import Image

    for i in range(count):
        image = Image.fromarray(pixels(rng, 18 + i % 5, 22 + 2 * (i % 3), levels))
        save(image, folder / (f"{i:02d}.png" if i % 2 else f"{i:02d}.jpg"))
    if modes:
        base = Image.fromarray(pixels(rng, 20, 24, levels))
        save(base.convert("L"), folder / "grey.png")
        save(base.convert("RGBA"), folder / "rgba.png")
        save(base.convert("P"), folder / "palette.png")
        save(base.convert("CMYK"), folder / "cmyk.jpg")
        exif_rotated_jpeg(folder / "rotated.jpg", pixels(rng, 20, 30, levels))


def truncated_png(path: Path) -> Path:
    """A PNG whose header is intact (it passes the listing's check) but whose pixels are cut off."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((20, 20, 3), 200, dtype=np.uint8)).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[:60])
    return path


def tutorial_folder(root: Path, per_class: int = 8, test_per_class: int = 6, modes: bool = True) -> Path:
    """The PyTorch transfer-learning tutorial's layout: train/ and val/, each with ants/ and bees/."""
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", test_per_class)):
        write_class(root / split / "ants", count, BRIGHT, rng, modes=modes and split == "train")
        write_class(root / split / "bees", count, DARK, rng, modes=modes and split == "train")
    return root


def data_line(stdout: str) -> str:
    [line] = [line for line in stdout.splitlines() if line.startswith("Data: image_")]
    return line


def single_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith(("Error:", "Interrupted"))]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def final_metrics(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if "time" not in k and "per_s" not in k}


@pytest.fixture
def quick_store(tmp_path, migrated_store_db) -> dict:
    """A store whose tables exist already (a test about refusals should not spend 4 s creating them)."""
    return new_store(tmp_path / "store", migrated_store_db)


# ----- reading images ------------------------------------------------------------------------------------
def test_every_image_mode_decodes_upright_to_the_channels_asked_for(tmp_path):
    from pipeline.data.image_files import decode_image_file
    from pipeline.data.streaming import UnreadableItem

    folder = tmp_path / "modes"
    write_class(folder, 1, BRIGHT, np.random.default_rng(1), modes=True)
    for name in ("grey.png", "rgba.png", "palette.png", "cmyk.jpg", "rotated.jpg", "00.jpg"):
        rgb = decode_image_file(str(folder / name), channels=3)
        grey = decode_image_file(str(folder / name), channels=1)
        assert rgb.dtype == torch.uint8 and rgb.shape[0] == 3 and grey.shape[0] == 1, name
        assert rgb.float().mean() > 120, name  # a bright image stays bright whatever its mode
    # stored 30 wide and 20 high with "rotate 90" in its EXIF: read upright, 30 high and 20 wide
    assert decode_image_file(str(folder / "rotated.jpg"), channels=3).shape == (3, 30, 20)
    grey = decode_image_file(str(folder / "grey.png"), channels=3)
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    with pytest.raises(UnreadableItem):
        decode_image_file(str(truncated_png(tmp_path / "cut.png")), channels=3)


def test_sixteen_bit_webp_and_animated_images_decode_like_their_eight_bit_copies(tmp_path):
    """A 16-bit PNG came back as uint16 (0..65535, normalised as if 0..255: a silently useless input), WebP
    and animated GIFs kept 3-4 channels when 1 was asked (a crash in the batch), WebP lay sideways."""
    from PIL import Image

    from pipeline.data.image_files import decode_image_file
    from pipeline.data.streaming import UnreadableItem

    rng = np.random.default_rng(2)
    grey = pixels(rng, 12, 10, BRIGHT)[..., 0]
    eight = decode_image_file(str(save(Image.fromarray(grey), tmp_path / "g8.png")), channels=1)
    sixteen = decode_image_file(str(save(Image.fromarray(grey.astype(np.uint16) * 257), tmp_path / "g16.png")),
                                channels=1)
    assert sixteen.dtype == torch.uint8 and torch.equal(sixteen, eight)
    assert decode_image_file(str(tmp_path / "g16.png"), channels=3).shape == (3, 12, 10)
    # TIFFs of more than 8 bits go through PIL, whose conversion clipped at 255: a 16-bit TIFF came out black and
    # white, a float TIFF of 0..1 black
    as_tiff = {"g16.tif": grey.astype(np.uint16) * 257, "f01.tif": (grey / 255).astype(np.float32),
               "f255.tif": grey.astype(np.float32), "i32.tif": grey.astype(np.int32)}
    for name, values in as_tiff.items():
        path = save(Image.fromarray(values), tmp_path / name)
        assert torch.equal(decode_image_file(str(path), channels=1), eight), name
        assert torch.equal(decode_image_file(str(path), channels=3)[1], eight[0]), name
    with pytest.raises(UnreadableItem, match="a 32-bit integer image with values from 0 to 69990"):
        decode_image_file(str(save(Image.fromarray(np.arange(16, dtype=np.int32).reshape(4, 4) * 4666), tmp_path /
                                   "wide.tif")), 1)
    colour = Image.fromarray(pixels(rng, 20, 30, BRIGHT))
    for name, image in (("rgb.webp", colour), ("rgba.webp", colour.convert("RGBA"))):
        path = save(image, tmp_path / name)
        assert decode_image_file(str(path), channels=1).shape == (1, 20, 30), name
        assert decode_image_file(str(path), channels=3).shape == (3, 20, 30), name
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = save(colour, tmp_path / "rotated.webp", exif=exif.tobytes())
    assert decode_image_file(str(rotated), channels=3).shape == (3, 30, 20)
    frames = [Image.fromarray(pixels(rng, 8, 8, BRIGHT)) for _ in range(2)]
    animated = save(frames[0], tmp_path / "moving.gif", save_all=True, append_images=frames[1:])
    assert decode_image_file(str(animated), channels=1).shape == (1, 8, 8)


def test_sampler_gives_the_in_memory_order_per_epoch_and_rank():
    """The streamed order is the in-memory TensorBatcher's: DistributedSampler semantics, seed + epoch."""
    from pipeline.data.base import TensorBatcher
    from pipeline.data.streaming import EpochSampler

    rows = torch.arange(23)
    for world_size in (1, 2, 3):
        for rank in range(world_size):
            for epoch in (0, 1, 5):
                batcher = TensorBatcher((rows,), batch_size=4, shuffle=True, seed=7, epoch_fn=lambda: epoch,
                                        rank=rank, world_size=world_size)
                sampler = EpochSampler(rows, num_replicas=world_size, rank=rank, shuffle=True, seed=7,
                                       epoch_fn=lambda: epoch)
                items = list(sampler)
                assert [index for _, index in items] == torch.cat([b[0] for b in batcher]).tolist()
                assert {e for e, _ in items} == {epoch}
    orders = [[i for _, i in EpochSampler(rows, num_replicas=1, rank=0, seed=7, epoch_fn=lambda: e)] for e in (0, 1)]
    assert orders[0] != orders[1]


# ----- the CLI on a folder of image files -------------------------------------------------------------------
@pytest.mark.slow
def test_streamed_tutorial_layout_trains_skips_unreadable_files_and_reports_val_as_test(tmp_path, store, capsys):
    folder = tutorial_folder(tmp_path / "hymenoptera")
    (folder / "train" / "bees" / "notes.jpg").write_text("not an image")  # found when listed
    truncated_png(folder / "val" / "ants" / "cut.png")  # found when the test split is read
    result = run_cli([*FAST, "data=image_folder", f"data.path={folder}", "data.skip_bad_files=true",
                      "data.auto_augment=trivial", "trainer.max_epochs=6", "optimizer.lr=0.01",
                      "logger.mlflow.log_model=true"], store)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]  # the model's export and logging say nothing
    line = data_line(result.stdout)
    # train/: 2 x (8 + 5 other modes) readable images, 10% held out for validation; val/: 2 x 6 + the cut one
    assert "streamed from the files (2 DataLoader workers; data.in_memory=auto" in line, line
    assert ": 23 train / 3 validation / 13 test images;" in line, line
    assert "val/ is the test split (reported as test/*)" in line, line
    # each file left out is named in a line of its own, those found in set-up too (the data line named the first)
    assert "left out 1 unreadable file(s) (data.skip_bad_files=true; each named in a 'Data: left out' line)" in line
    assert f"left out unreadable image {folder}/train/bees/notes.jpg (" in result.stdout
    assert f"left out unreadable image {folder}/val/ants/cut.png" in result.stdout
    [run] = runs_in(store)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/acc"] >= 0.9, run.data.metrics
    # each tested image named beside its prediction, the one the test pass left out not among them (the column was
    # dropped where a file had been left out)
    tested = (store["outputs"] / "predictions" / "test.csv").read_text().splitlines()
    assert tested[0].startswith("row,path,target,") and len(tested) == 1 + 12, tested[:2]
    assert not any("cut.png" in line for line in tested)
    contexts = sorted(tag.value for d in run.inputs.dataset_inputs for tag in d.tags)
    assert contexts == ["testing", "training", "validation"]
    assert run.data.tags["data_digest"] == next(d.dataset.digest for d in run.inputs.dataset_inputs
                                                if d.tags[0].value == "training")
    # the logged model takes image files: a "path" column in, class and probabilities out; pipeline-predict on the
    # val/ folder answers alike and scores the run's test/acc there
    import pandas as pd

    from pipeline.cli.predict import main as predict_main

    def predict(args):
        try:
            predict_main([*args, "--tracking-uri", store["uri"]])
        except SystemExit as exit_:
            return exit_.code or 0
        return 0

    output = tmp_path / "val_predictions.csv"
    CUT = "cannot read the image (damaged PNG data: the file ends inside the IDAT chunk at byte 33 (cut short?))"
    capsys.readouterr()
    assert predict([run.info.run_id, "--input", str(folder / "val"), "--output", str(output)]) == 2  # cut.png
    assert not output.exists()
    assert error_line(capsys.readouterr().err).endswith(
        f"{folder}/val/ants/cut.png: {CUT}; --skip-bad-files leaves such files out"), "the refusal names the option"
    skipping = tmp_path / "val_predictions_skipping.csv"
    assert predict([run.info.run_id, "--input", str(folder / "val"), "--output", str(skipping), "--skip-bad-files",
                    "--batch-size", "5"]) == 0
    assert (f"Note: 1 unreadable image file of {folder / 'val'} left out (--skip-bad-files): {folder}/val/ants/cut.png: "
            f"{CUT}; the output has 12 rows for 13") in capsys.readouterr().err
    # a table of paths: the row left out is said by its number, as the output holds no path to pair rows by
    listed = tmp_path / "listed.csv"
    readable = [p for p in sorted((folder / "val" / "ants").iterdir()) if p.name != "cut.png"][:3]
    listed.write_text("path\n" + "\n".join(map(str, [*readable[:2], folder / "val" / "ants" / "cut.png",
                                                      readable[2]])) + "\n")
    assert predict([run.info.run_id, "--input", str(listed), "--output", str(tmp_path / "l.csv"), "--skip-bad-files"]) == 0
    assert (f"Note: 1 unreadable image file of {listed} (row 2; 0 is the first data row) left out "
            "(--skip-bad-files)") in capsys.readouterr().err
    (folder / "val" / "ants" / "cut.png").unlink()
    assert predict([run.info.run_id, "--input", str(folder / "val"), "--output", str(output)]) == 0
    predicted = pd.read_csv(output)
    assert pd.read_csv(skipping).equals(predicted)  # the readable files answered as without the unreadable one
    assert len(predicted) == 12 and list(predicted.columns) == ["path", "prediction", "probability_ants", "probability_bees"]
    truth = [Path(p).parent.name for p in predicted["path"]]
    assert float((predicted["prediction"] == truth).mean()) == pytest.approx(run.data.metrics["test/acc"], abs=1e-6)
    # one image file: one row, as the folder's answer for it (it was refused as "a binary file, not CSV text")
    one = tmp_path / "one.csv"
    assert predict([run.info.run_id, "--input", predicted["path"][3], "--output", str(one)]) == 0
    assert pd.read_csv(one).equals(predicted.iloc[[3]].reset_index(drop=True))
    # pipeline-eval on a labelled folder of its own (data.test_path): read with the run's normalisation, it scores
    # what pipeline-predict answered on those images; the training images need not be there
    (folder / "train").rename(tmp_path / "elsewhere")
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={folder / 'val'}", "--tracking-uri",
                                     store["uri"], "--output-dir", str(tmp_path / "evaluation")])
    (tmp_path / "elsewhere").rename(folder / "train")
    assert code == 0 and "Warning" not in stderr, stderr[-3000:]
    line = data_line(stdout)
    assert f"{folder / 'val'} (data.test_path)" in line and ": 0 train / 0 validation / 12 test images" in line, line
    assert float(re.search(r"test/acc=([\d.]+)", stdout).group(1)) == pytest.approx(
        float((predicted["prediction"] == truth).mean()), abs=6e-5)
    model = load_pyfunc(store, run.info.run_id)
    by_mlflow = model.predict(pd.DataFrame({"path": predicted["path"]}))
    assert by_mlflow["prediction"].tolist() == predicted["prediction"].tolist()
    assert by_mlflow["probability_bees"].to_numpy() == pytest.approx(predicted["probability_bees"].to_numpy(), abs=1e-6)
    # ImageNet's statistics instead of the run's: was ignored (the run's statistics used) while the evaluation's
    # config recorded normalization=imagenet
    code, _, stderr = eval_cli([run.info.run_id, f"data.test_path={folder / 'val'}", "data.normalization=imagenet",
                                "--tracking-uri", store["uri"], "--output-dir", str(tmp_path / "refused")])
    assert code == 2 and "Error: data.normalization=imagenet (the run's: dataset): " in error_line(stderr), stderr[-2000:]


def test_files_copied_without_their_times_are_said_to_count_as_changed(tmp_path, quick_store):
    """A folder's digest covers each file's path, size and modification time (reading every image to hash it would
    cost a pass over the data per run): an evaluation after a copy that did not keep the times warns that the test
    rows differ, and now says why a copy counts as changed; the metrics are the run's."""
    folder = tutorial_folder(tmp_path / "pets", per_class=4, test_per_class=2, modes=False)
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "trainer.max_epochs=1"],
                                quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(quick_store)
    for image in folder.rglob("*.png"):
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))  # as a fresh copy's
    code, stdout, stderr = eval_cli([run.info.run_id, "--tracking-uri", quick_store["uri"],
                                     "--output-dir", str(tmp_path / "evaluation")])
    assert code == 0, stderr[-2000:]
    assert ("the files it read have changed since (a file's path, size and modification time: a copy that did not "
            "keep the times, cp without -p, counts as changed)") in stderr, stderr[-2000:]
    assert float(re.search(r"test/acc=([\d.]+)", stdout).group(1)) == pytest.approx(run.data.metrics["test/acc"],
                                                                                    abs=6e-5)


def test_a_resume_on_other_images_or_images_prepared_otherwise_is_refused_and_a_copy_resumes(tmp_path, quick_store):
    """A checkpoint of an image-folder run resumed with data.limit_rows or another data.val_fraction used to continue
    on other rows without a word (its test rows could be the checkpoint's training images), and with another
    data.normalization on inputs its weights never saw: refused, as for tables and texts. A copy of the folder that did
    not keep the files' times is the same images and resumes."""
    folder = tutorial_folder(tmp_path / "pets", per_class=6, test_per_class=2, modes=False)
    training = [*FAST, "data=image_folder", f"data.path={folder}", "trainer.max_epochs=1"]
    first = run_cli_in_process(training, quick_store)
    assert first.returncode == 0, first.stderr[-3000:]
    last = quick_store["outputs"] / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)
    assert set(saved["data_digests"]) == set(saved["input_digests"]) == {"training", "validation"}
    resume = [f"ckpt_path={last}", "trainer.max_epochs=2"]
    for override, said in (("data.limit_rows=8", "was written on other training and validation rows than this run's"),
                           ("data.val_fraction=0.4", "was written on other training and validation rows than this run's"),
                           ("data.normalization=imagenet", "was written on the same rows prepared otherwise (digests of the "
                                                  "training and validation inputs")):
        result = run_cli_in_process([*training, *resume, override],
                                    dict(quick_store, outputs=tmp_path / override.partition("=")[0]))
        assert result.returncode == 2, (override, result.stderr[-3000:])
        assert f"Error: ckpt_path={last} {said}" in single_error_line(result.stderr), result.stderr[-2000:]
    assert len(runs_in(quick_store)) == 1  # refused before any run
    for image in folder.rglob("*.png"):  # as a copy's, made without -p
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**9))
    resumed = run_cli_in_process([*training, *resume], dict(quick_store, outputs=tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]


def test_unreadable_file_is_named_in_one_line_before_any_run(tmp_path, quick_store):
    folder = tutorial_folder(tmp_path / "pets", per_class=3, test_per_class=1, modes=False)
    (folder / "train" / "bees" / "index.html.jpg").write_text("<html>a saved web page</html>")
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}"], quick_store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert line.startswith(f"Error: {folder}/train/bees/index.html.jpg: cannot read the image (") and \
        "data.skip_bad_files=true" in line, line
    assert runs_in(quick_store) == []


def test_auto_augment_none_turns_it_off_as_a_sweeps_choice_can_write_it(tmp_path, quick_store):
    """Hydra's sweep grammar refuses null in choice(...), so 'data.auto_augment=choice(none,trivial)' is how a search
    over it is written; 'none' was refused with "choose one of trivial, randaugment or null"."""
    folder = tutorial_folder(tmp_path / "pets", per_class=3, test_per_class=1, modes=False)
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "data.auto_augment=none",
                                 "trainer.max_epochs=1"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "auto_augment" not in data_line(result.stdout)  # no per-image auto-augment: read into memory
    [run] = runs_in(quick_store)
    assert run.info.status == "FINISHED"
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "data.auto_augment=trivia"],
                                quick_store)
    assert result.returncode == 2
    assert single_error_line(result.stderr) == ("Error: data.auto_augment='trivia' is not allowed; choose one of "
                                                "trivial, randaugment or none")


def test_one_class_folder_is_refused_before_any_run(tmp_path, quick_store):
    write_class(tmp_path / "cats" / "cat", 4, BRIGHT, np.random.default_rng(0))
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={tmp_path / 'cats'}"], quick_store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert "has one class (cat); classification needs at least two classes" in line, line
    assert runs_in(quick_store) == []


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_a_class_whose_every_file_is_unreadable_is_refused_with_skip_bad_files(tmp_path, quick_store, in_memory):
    """data.skip_bad_files=true left out every file of a class, and the run finished as a model with that class
    (a probability_<class> column) which never saw an image of it; the only sign was "left out 3 unreadable
    file(s)". Refused now, as an empty class folder is: one line naming the folder (or the label), no run."""
    from pipeline.data.image_files import ImageCSV

    folder = tutorial_folder(tmp_path / "pets", per_class=3, test_per_class=1, modes=False)
    for index in range(3):
        (folder / "train" / "wasps" / f"{index}.png").parent.mkdir(parents=True, exist_ok=True)
        (folder / "train" / "wasps" / f"{index}.png").write_text("junk")
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "data.skip_bad_files=true",
                                 f"data.in_memory={in_memory}", "data.augment=false", "data.num_workers=0"], quick_store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert line.startswith(f"Error: data.path: no readable images in {folder / 'train' / 'wasps'}: every one is "
                           "unreadable and data.skip_bad_files=true left it out"), line
    assert "remove the class's folder" in line, line
    assert runs_in(quick_store) == []
    # a listing: the label is named
    listing = tmp_path / "labels.csv"
    rows = [f"{path.relative_to(tmp_path)},{path.parent.name}" for path in sorted((folder / "train").rglob("*.*"))]
    listing.write_text("path,label\n" + "\n".join(rows) + "\n")
    data = ImageCSV(path=str(listing), image_size=16, num_workers=0, skip_bad_files=True, augment=False,
                    in_memory=in_memory == "true")
    with pytest.raises(Exception, match=rf"{listing} \(column 'label'\): no readable training image labelled 'wasps': "
                                        "every one is unreadable"):
        data.setup()


@pytest.mark.parametrize("in_memory", ["true", "false"])
def test_the_split_sizes_count_no_file_found_unreadable_in_set_up(tmp_path, quick_store, in_memory):
    """A streamed run reads its training images in set-up to take their statistics; the files found cut short there
    were left out, yet the data line counted them (9 train images of 8 readable ones). Both paths count alike now."""
    folder = tutorial_folder(tmp_path / "pets", per_class=4, test_per_class=2, modes=False)
    cut = truncated_png(folder / "train" / "bees" / "cut.png")  # its header reads well: found when decoded
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "data.skip_bad_files=true",
                                 f"data.in_memory={in_memory}", "data.augment=false", "data.num_workers=0",
                                 "data.val_fraction=0", "trainer.max_epochs=1"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    line = data_line(result.stdout)
    assert ": 8 train / 0 validation / 4 test images;" in line, line
    assert "left out 1 unreadable file(s) (data.skip_bad_files=true; each named in a 'Data: left out' line)" in line
    assert f"Data: left out unreadable image {cut} (" in result.stdout, result.stdout


@pytest.mark.slow
def test_file_unreadable_while_streaming_stops_the_run_with_its_name(tmp_path, quick_store):
    folder = tutorial_folder(tmp_path / "hymenoptera", per_class=4, test_per_class=2, modes=False)
    cut = truncated_png(folder / "val" / "bees" / "cut.png")  # in the test split: read after training
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "trainer.max_epochs=1"],
                                quick_store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert line.startswith(f"Error: {cut}: cannot read the image ("), line
    [run] = runs_in(quick_store)
    assert run.info.status == "FAILED"


def test_streamed_and_in_memory_give_the_same_metrics(tmp_path, migrated_store_db):
    """Without random augmentation both paths feed the model the same tensors in the same order."""
    from pipeline.train import train

    folder = tutorial_folder(tmp_path / "hymenoptera", per_class=6, test_per_class=3)
    common = [*FAST, "data=image_folder", f"data.path={folder}", "data.augment=false", "trainer.max_epochs=3",
              "model.dropout=0.2"]
    metrics = {}
    for in_memory, workers in (("true", 0), ("false", 2)):
        store = new_store(tmp_path / f"in_memory_{in_memory}", migrated_store_db)
        cfg = compose_for_train(store, [*common, f"data.in_memory={in_memory}", f"data.num_workers={workers}"])
        metrics[in_memory] = {k: v for k, v in train(cfg).items()}
    assert metrics["true"].keys() == metrics["false"].keys() and "test/acc" in metrics["true"]
    for key, value in metrics["true"].items():
        if "time" in key or "per_s" in key:  # wall-clock measurements
            continue
        assert metrics["false"][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_ctrl_c_with_workers_then_resume_gives_the_uninterrupted_metrics(tmp_path, store):
    """Per-image random transforms, dropout and 2 workers: the resumed run sees what the uninterrupted one saw."""
    folder = tutorial_folder(tmp_path / "hymenoptera", per_class=6, test_per_class=3, modes=False)
    training = [*FAST, "data=image_folder", f"data.path={folder}", "data.auto_augment=trivial", "data.erasing=0.5",
                "model.dropout=0.3", "trainer.max_epochs=3"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen([sys.executable, "-m", "pipeline.cli.train", *training, *store_overrides(store)],
                               cwd=PROJECT_ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = store["outputs"] / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "training ended before it could be interrupted"
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and time.monotonic() - sent < 10, stderr[-3000:]
    assert f"ckpt_path={last.resolve()}" in single_error_line(stderr)
    assert torch.load(last, weights_only=True)["epoch"] < 2  # a checkpoint of an unfinished run

    resumed = run_cli([*training, f"ckpt_path={last.resolve()}"], dict(store, outputs=tmp_path / "resumed"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    uninterrupted = run_cli(training, dict(store, outputs=tmp_path / "uninterrupted"))
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    killed, resumed_run, full_run = sorted(runs_in(store), key=lambda run: run.info.start_time)
    assert (killed.info.status, resumed_run.info.status, full_run.info.status) == ("KILLED", "FINISHED", "FINISHED")
    assert "test/acc" in final_metrics(full_run) and "train/loss" in final_metrics(full_run)
    assert final_metrics(resumed_run) == final_metrics(full_run)


DROPPED_FETCH = """
import os, socket, struct, sys, time
from multiprocessing import resource_sharer
if sys.argv[1] == "quiet":
    from pipeline.data.workers import quiet_worker
    quiet_worker(0)
share = resource_sharer.DupFd(os.pipe()[0])  # as a worker does for each batch: starts the sharer's thread
address, _ = share._id
for _ in range(3):  # the main process fetching a batch, stopped by Ctrl-C: the connection is reset
    peer = socket.socket(socket.AF_UNIX)
    peer.connect(address)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    time.sleep(0.2)
sys.excepthook(ValueError, ValueError("any other error"), None)
"""


@pytest.mark.cli
def test_a_worker_whose_batch_fetch_is_cut_off_prints_no_traceback():
    """The CI failure of the Ctrl-C test above: the worker's resource-sharer thread printed a traceback of
    the dropped connection under the "Interrupted" line. Reproduced with the real sharer and a reset socket."""
    def stderr_of(mode: str) -> str:
        done = subprocess.run([sys.executable, "-c", DROPPED_FETCH, mode], capture_output=True, text=True,
                              timeout=60, cwd=PROJECT_ROOT)
        assert done.returncode == 0, done.stderr
        return done.stderr

    assert "resource_sharer.py" in stderr_of("plain")  # the mechanism is real
    quiet = stderr_of("quiet")
    assert "resource_sharer" not in quiet and "Traceback" not in quiet
    assert "ValueError: any other error" in quiet  # other errors still reach the terminal


def test_image_csv_lists_relative_paths_with_a_split_column(tmp_path):
    from pipeline.data.base import DataError
    from pipeline.data.image_files import ImageCSV

    folder = tutorial_folder(tmp_path / "photos", per_class=5, test_per_class=2, modes=False)
    lines = ["path,label,split"]
    for split in ("train", "val"):
        for label in ("ants", "bees"):
            for image in sorted((folder / split / label).iterdir()):
                lines.append(f"{image.relative_to(folder)},{label},{split}")
    lines.append("train/bees/missing.png,bees,train")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=f"{folder}/train/bees/missing.png: cannot read the image \\(no such file\\)"):
        ImageCSV(path=str(folder / "labels.csv"), image_size=8).setup()
    data = ImageCSV(path=str(folder / "labels.csv"), image_size=8, skip_bad_files=True, num_workers=0)
    data.setup()
    assert data.spec.class_names == ["ants", "bees"] and data.spec.input_shape == (3, 8, 8)
    assert [len(data.rows[name]) for name in ("train", "val", "test")] == [9, 1, 4]  # val rows are the test split
    assert sorted(data.rows["test"].y.tolist()) == [0, 0, 1, 1]
    # a listing written on Windows (train\ants\0.png): the same images, not "cannot read" for every one
    (folder / "windows.csv").write_text("\n".join(line.replace("/", "\\") for line in lines[:-1]) + "\n")
    written = ImageCSV(path=str(folder / "windows.csv"), image_size=8, num_workers=0)
    written.setup()
    assert [len(written.rows[name]) for name in ("train", "val", "test")] == [9, 1, 4]


def test_split_sizes_read_into_memory_leave_out_files_found_unreadable_while_read(tmp_path, capsys):
    """A truncated image passes the listing's header check and fails when read: read into memory, it is out of the
    split sizes announced (they counted it), of the data set records and of each test row's file."""
    folder = tutorial_folder(tmp_path / "photos", per_class=5, test_per_class=2, modes=False)
    truncated_png(folder / "val" / "ants" / "cut.png")
    from pipeline.data.image_files import ImageFolder

    data = ImageFolder(path=str(folder), image_size=8, skip_bad_files=True, num_workers=0, in_memory=True,
                       augment=False)
    data.setup()
    assert [len(data.rows[name]) for name in ("train", "val", "test")] == [
        len(data.train_split), len(data.val_split), len(data.test_split)]
    assert len(data.test_split) == 4
    assert "/ 4 test images" in capsys.readouterr().out
    _, paths = data.test_row_sources()
    assert len(paths) == 4 and not any(path.endswith("cut.png") for path in paths)


def listing(folder: Path, splits=("train", "val"), relative_to: Optional[Path] = None) -> list[str]:
    """``path,label,split`` lines for the images of ``folder``'s split folders, paths relative to ``relative_to``."""
    lines = ["path,label,split"]
    for split in splits:
        for label in ("ants", "bees"):
            for image in sorted((folder / split / label).iterdir()):
                lines.append(f"{os.path.relpath(image, relative_to or folder)},{label},{split}")
    return lines


def test_image_csv_run_is_evaluated_on_a_listing_of_its_own(tmp_path, quick_store):
    """data.test_path for data=image_csv: a second CSV, its paths relative to itself, is the test split;
    pipeline-eval reads it with the run's normalisation and classes and scores what pipeline-predict answers."""
    import pandas as pd

    folder = tutorial_folder(tmp_path / "photos", per_class=8, test_per_class=3, modes=False)
    (folder / "labels.csv").write_text("\n".join(listing(folder)) + "\n")
    new = tutorial_folder(tmp_path / "new" / "photos", per_class=0, test_per_class=5, modes=False)
    (new.parent / "new_labels.csv").write_text("\n".join(listing(new, ("val",), new.parent)) + "\n")
    result = run_cli_in_process([*FAST, "data=image_csv", f"data.path={folder / 'labels.csv'}", "trainer.max_epochs=4",
                                 "optimizer.lr=0.01", "logger.mlflow.log_model=true"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    # predictions/test.csv names each test row's image file
    tested = pd.read_csv(next(quick_store["tmp"].rglob("predictions/test.csv")))
    assert list(tested.columns[:3]) == ["row", "path", "target"] and len(tested) > 0
    assert all(Path(p).is_file() and Path(p).parent.name == t for p, t in zip(tested["path"], tested["target"]))
    [run] = runs_in(quick_store)
    code, stdout, stderr = predict_cli([run.info.run_id, "--input", str(new / "val"), "--output",
                                        str(tmp_path / "p.csv"), "--tracking-uri", quick_store["uri"]])
    assert code == 0, stderr[-3000:]
    predicted = pd.read_csv(tmp_path / "p.csv")
    truth = [Path(p).parent.name for p in predicted["path"]]
    accuracy = float((predicted["prediction"] == truth).mean())
    # a listing of paths relative to itself with an empty cell: --keep copies the paths as written (it wrote them
    # resolved), and the row the empty cell lost is said (3 predictions for 4 rows, without a word)
    paths = [line.split(",")[0] for line in listing(new, ("val",), new.parent)[1:3]]
    (new.parent / "paths.csv").write_text("\n".join(["path", paths[0], "", paths[1], paths[0]]) + "\n")
    code, stdout, stderr = predict_cli([run.info.run_id, "--input", str(new.parent / "paths.csv"), "--keep", "path",
                                        "--output", str(tmp_path / "kept.csv"), "--tracking-uri", quick_store["uri"]])
    assert code == 0, stderr[-3000:]
    assert list(pd.read_csv(tmp_path / "kept.csv")["path"]) == [paths[0], paths[1], paths[0]]
    assert (f"Note: 1 blank row of {new.parent / 'paths.csv'} skipped (row 1; 0 is the first data row): the output "
            "has 3 rows for 4") in stderr, stderr[-2000:]
    # the same listing written on Windows (photos\val\ants\00.jpg), which training reads: the same answers ("cannot
    # read the image" before)
    (new.parent / "windows.csv").write_text("\n".join(["path", *(p.replace("/", "\\") for p in paths)]) + "\n")
    code, stdout, stderr = predict_cli([run.info.run_id, "--input", str(new.parent / "windows.csv"), "--output",
                                        str(tmp_path / "windows.csv"), "--tracking-uri", quick_store["uri"]])
    assert code == 0, stderr[-3000:]
    assert pd.read_csv(tmp_path / "windows.csv").equals(pd.read_csv(tmp_path / "kept.csv").iloc[:2].drop(columns="path"))
    (folder / "labels.csv").rename(tmp_path / "elsewhere.csv")  # the training listing is not needed (nor read)
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={new.parent / 'new_labels.csv'}",
                                     "--tracking-uri", quick_store["uri"], "--output-dir", str(tmp_path / "eval")])
    (tmp_path / "elsewhere.csv").rename(folder / "labels.csv")
    assert code == 0 and "Warning" not in stderr, stderr[-3000:]
    line = data_line(stdout)
    assert f"test split: {new.parent / 'new_labels.csv'} (data.test_path)" in line, line
    assert ": 0 train / 0 validation / 10 test images" in line, line
    # nothing is trained: the run's random crops are not a reason to stream (it said "streamed from the files (...
    # data.in_memory=auto: data.random_resized_crop=true is drawn per image)")
    assert "read into memory (data.in_memory=auto: " in line, line
    assert float(re.search(r"test/acc=([\d.]+)", stdout).group(1)) == pytest.approx(accuracy, abs=6e-5)
    # a label the run never trained on is refused, naming it, before any evaluation run
    (new.parent / "new_labels.csv").write_text("\n".join([*listing(new, ("val",), new.parent),
                                                          "photos/val/ants/00.jpg,wasps,test",
                                                          "photos/val/bees/00.jpg,Bees,test"]) + "\n")
    runs = len(runs_in(quick_store))
    (tmp_path / "eval2").mkdir()
    (tmp_path / "eval2" / "notes.txt").write_text("mine")
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={new.parent / 'new_labels.csv'}",
                                     "--tracking-uri", quick_store["uri"], "--output-dir", str(tmp_path / "eval2")])
    # a class spelled in another case (a folder renamed Bees/) is said to be the trained one's spelling
    assert code == 2 and single_error_line(stderr).endswith(
        "labels ['Bees', 'wasps'] are not classes the model was trained on ('ants', 'bees'); 'Bees' is spelled 'bees' "
        "in training"), stderr[-3000:]
    assert len(runs_in(quick_store)) == runs
    # the user's folder is kept, without the refused evaluation's claim on it (the next one there wrote to eval2-2)
    assert sorted(p.name for p in (tmp_path / "eval2").iterdir()) == ["notes.txt"]


def test_eval_on_a_folder_of_split_folders_names_its_test_folder(tmp_path, quick_store):
    """pipeline-eval <run> data.test_path=<a data set's root holding train/ and test/> was refused as "labels
    ['test', 'train'] are not classes the model was trained on ('ants', 'bees')", and pipeline-train with it as
    data.test_path "class folders ['test', 'train'] do not exist in <train folder>"; both now say which folder to
    name."""
    folder = tutorial_folder(tmp_path / "photos", per_class=3, test_per_class=1, modes=False)
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "trainer.max_epochs=1"],
                                quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(quick_store)
    other = tmp_path / "other"
    write_class(other / "Train" / "ants", 2, BRIGHT, np.random.default_rng(1))
    write_class(other / "Test" / "ants", 2, BRIGHT, np.random.default_rng(2))
    code, stdout, stderr = eval_cli([run.info.run_id, f"data.test_path={other}", "--tracking-uri", quick_store["uri"],
                                     "--output-dir", str(tmp_path / "eval")])
    assert code == 2 and single_error_line(stderr).endswith(
        "labels ['Test', 'Train'] are not classes the model was trained on ('ants', 'bees'); Test/, Train/ are split "
        f"folders: name the one to test, data.test_path={other / 'Test'}"), stderr[-3000:]
    assert len(runs_in(quick_store)) == 1
    # training with it as its test folder: "class folders ['Test', 'Train'] do not exist in <train folder>" alone
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", f"data.test_path={other}"],
                                quick_store)
    assert result.returncode == 2 and single_error_line(result.stderr).endswith(
        "; Test/, Train/ are split folders: name the one to test, data.test_path=" + str(other / "Test"))
    assert len(runs_in(quick_store)) == 1
    # a test folder whose class folder is the training one in another case (Ants/ for ants/)
    write_class(tmp_path / "cased" / "Ants", 2, BRIGHT, np.random.default_rng(3))
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}",
                                 f"data.test_path={tmp_path / 'cased'}"], quick_store)
    assert result.returncode == 2 and single_error_line(result.stderr).endswith(
        "class folders ['Ants'] do not exist in " + f"{folder / 'train'}; 'Ants' is spelled 'ants' in training")


def test_predict_or_evaluate_with_an_evaluation_runs_id_names_the_run_it_evaluated(tmp_path, quick_store):
    """The id of a pipeline-eval run (an easy pick in the UI: it sits beside its source with test metrics) given to
    pipeline-predict was "cannot load the model ... (was the run logged with logger.mlflow.log_model=false? then pass
    its checkpoint file instead)", and to pipeline-eval "logged no checkpoint ... cannot be evaluated from the store":
    neither named the run that holds the model."""
    folder = tutorial_folder(tmp_path / "photos", per_class=3, test_per_class=1, modes=False)
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={folder}", "trainer.max_epochs=1"],
                                quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    [trained] = runs_in(quick_store)
    source = trained.info.run_id
    code, stdout, stderr = eval_cli([source, "--tracking-uri", quick_store["uri"], "--output-dir", str(tmp_path / "e")])
    assert code == 0, stderr[-3000:]
    [evaluation] = [run.info.run_id for run in runs_in(quick_store) if run.info.run_id != source]
    said = f"run {evaluation} is an evaluation of run {source} (pipeline-eval), which holds the model: "
    code, stdout, stderr = predict_cli([evaluation, "--input", str(folder / "val"), "--output",
                                        str(tmp_path / "p.csv"), "--tracking-uri", quick_store["uri"]])
    assert code == 2 and single_error_line(stderr) == f"Error: {said}predict with {source}", stderr[-3000:]
    code, stdout, stderr = eval_cli([evaluation, "--tracking-uri", quick_store["uri"], "--output-dir",
                                     str(tmp_path / "e2")])
    assert code == 2 and single_error_line(stderr) == f"Error: {said}evaluate with {source}", stderr[-3000:]
    # pipeline-rerun of it trained a new model from the evaluated run's config with the evaluation's test data,
    # saying nothing of the id being an evaluation's
    from conftest import rerun_cli

    code, stdout, stderr = rerun_cli([evaluation, "--tracking-uri", quick_store["uri"], "--output-dir",
                                      str(tmp_path / "r")])
    assert code == 2 and single_error_line(stderr) == (
        f"Error: {said}rerun with {source} (pipeline-rerun {source}), or evaluate it again (pipeline-eval {source})"), \
        stderr[-3000:]
    assert len(runs_in(quick_store)) == 2 and not (tmp_path / "r").exists()


def test_raw_input_adapter_reads_files_as_the_test_split_was_read(tmp_path):
    import pickle

    import pandas as pd

    from pipeline.data.image_files import ImageFolder

    folder = tutorial_folder(tmp_path / "photos", per_class=4, test_per_class=2)
    data = ImageFolder(path=str(folder), image_size=12, num_workers=0)
    data.setup()
    adapter = pickle.loads(pickle.dumps(data.raw_input_adapter()))  # it travels with a logged model
    test = data.rows["test"]
    frame = pd.DataFrame({"path": [data.row_name(row) for row in test.x.tolist()]})
    expected = torch.cat([x for x, _ in data.test_batches()])
    assert torch.equal(adapter.to_tensor(frame), expected)
    with pytest.raises(ValueError, match="cut.png: cannot read the image"):
        adapter.to_tensor(pd.DataFrame({"path": [str(truncated_png(tmp_path / "cut.png"))]}))
    # a PNG whose header chunk is damaged: said so, without torchvision's source path and "Internal error."
    import io

    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (12, 12)).save(png, "PNG")
    damaged = bytearray(png.getvalue())
    damaged[12:16] = b"\x14is\x14"  # the IHDR chunk's type
    (tmp_path / "damaged.png").write_bytes(bytes(damaged))
    with pytest.raises(ValueError) as refused:
        adapter.to_tensor(pd.DataFrame({"path": [str(tmp_path / "damaged.png")]}))
    assert str(refused.value).endswith("damaged.png: cannot read the image (damaged PNG data: a chunk of no valid "
                                       "type at byte 8)"), str(refused.value)


def test_a_model_trained_on_fashion_mnist_arrays_predicts_png_files(tmp_path, migrated_store_db):
    """Fashion-MNIST is read from its idx arrays, yet its logged model and pipeline-predict take image files: the
    test images written as PNG files get the run's test accuracy, from the run id and from the checkpoint."""
    import pandas as pd
    from PIL import Image

    from pipeline.data.images import FashionMNIST
    from pipeline.train import train

    fake_fashion(tmp_path / "data" / "fashion-mnist", n_train=60, n_test=20)
    store = new_store(tmp_path / "store", migrated_store_db)
    metrics = train(compose_for_train(store, [
        "task=image_classification", "data=fashion_mnist", f"paths.data_dir={tmp_path / 'data'}", "data.download=false",
        "model=cnn", "model.channels=[4,8]", "model.hidden_dim=8", "trainer.max_epochs=2",
        "logger.mlflow.log_plots=false"]))
    [run] = runs_in(store)
    raw = FashionMNIST(data_dir=str(tmp_path / "data"), download=False, normalize=False)
    raw.setup("fit")
    folder = tmp_path / "pngs"
    folder.mkdir()
    names = []
    for index, image in enumerate(raw.test_split.x[:, 0]):
        names.append(f"{index:02d}.png")
        Image.fromarray((image * 255).round().to(torch.uint8).numpy()).save(folder / names[-1])
    truth = np.asarray(FashionMNIST.class_names)[raw.test_split.y.numpy()]

    by_model = load_pyfunc(store, run.info.run_id).predict(pd.DataFrame({"path": [str(folder / n) for n in names]}))
    assert float((by_model["prediction"].to_numpy() == truth).mean()) == pytest.approx(metrics["test/acc"], abs=1e-6)
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    for source in (run.info.run_id, str(checkpoint)):
        output = tmp_path / "predictions.csv"
        code, _, stderr = predict_cli([source, "--input", str(folder), "--output", str(output),
                                       "--tracking-uri", store["uri"]])
        assert code == 0, stderr[-3000:]
        answered = pd.read_csv(output).sort_values("path")
        assert [Path(p).name for p in answered["path"]] == names
        assert (answered["prediction"].to_numpy() == by_model["prediction"].to_numpy()).all()
        np.testing.assert_allclose(answered["probability_Bag"], by_model["probability_Bag"], atol=1e-5)
    (folder / "notes.txt").write_text("not an image")
    Path(folder / "broken.png").write_bytes(b"not a png")
    code, _, stderr = predict_cli([run.info.run_id, "--input", str(folder), "--output", str(tmp_path / "never.csv"),
                                   "--tracking-uri", store["uri"]])
    assert code == 2 and "broken.png: cannot read the image" in error_line(stderr)
    # pipeline-eval with another seed holds out other validation images, yet the images are normalised with the
    # run's statistics (its own test split gives its metrics); without normalisation the model would see other
    # inputs: refused before any run
    code, stdout, stderr = eval_cli([run.info.run_id, "data.seed=9", "--tracking-uri", store["uri"],
                                     "--output-dir", str(tmp_path / "evaluation")])
    assert code == 0 and stderr.startswith("Warning: data.seed may draw other test rows"), stderr[-3000:]
    assert float(re.search(r"test/acc=([\d.]+)", stdout).group(1)) == pytest.approx(metrics["test/acc"], abs=6e-5)
    code, _, stderr = eval_cli([run.info.run_id, "data.normalization=none", "--tracking-uri", store["uri"],
                                "--output-dir", str(tmp_path / "refused")])
    assert code == 2 and error_line(stderr).startswith(
        "Error: data.normalization=none (the run's: dataset): pipeline-eval tests the model on inputs made as the run "
        "made them"), stderr  # the key named, as for a table's preprocessing keys (it named preprocessing.mean/std)
    assert not (tmp_path / "refused").exists()


# ----- pretrained torchvision models ---------------------------------------------------------------------------
def resnet18_state_dict(path: Path) -> dict:
    import torchvision

    torch.manual_seed(3)
    state = torchvision.models.resnet18(num_classes=1000).state_dict()
    torch.save(state, path)
    return state


@pytest.mark.slow
def test_torchvision_model_from_a_state_dict_file_through_the_cli(tmp_path, store):
    folder = tutorial_folder(tmp_path / "hymenoptera", per_class=6, test_per_class=2, modes=False)
    weights = tmp_path / "resnet18.pth"
    state = resnet18_state_dict(weights)
    result = run_cli(["task=image_classification", "data=image_folder", f"data.path={folder}", "data.image_size=32",
                      "data.batch_size=8", "model=torchvision", "model.name=resnet18", f"model.weights={weights}",
                      "model.freeze_backbone=true", "model.unfreeze_at_epoch=5", "trainer.max_epochs=1",
                      "trainer.precision=bf16-mixed", "logger.mlflow.log_plots=false", "logger.mlflow.log_model=false"],
                     store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DataLoader workers" in data_line(result.stdout)
    # an unfreezing epoch after the last one: said, not silently never reached
    assert "Note: model.unfreeze_at_epoch=5 is not an epoch of this run (epochs 0..0, trainer.max_epochs=1): the " \
        "backbone stays frozen throughout" in result.stdout, result.stdout[-2000:]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics
    assert run.data.params["data.normalization"] == "imagenet"  # what the model's weights expect
    best = next((store["outputs"] / "checkpoints").glob("best-*.ckpt"))
    trained = torch.load(best, weights_only=True)["state_dict"]
    # the backbone came from the file and stayed frozen; the head is new, with one logit for two classes
    assert torch.equal(trained["model.network.conv1.weight"], state["conv1.weight"])
    assert trained["model.network.fc.weight"].shape == (1, 512)


def test_a_last_training_batch_of_one_image_trains_where_the_feature_map_is_one_pixel(tmp_path, quick_store):
    """resnet18 at 32 px ends on a 1x1 feature map; a training split one image over a multiple of data.batch_size
    (here 6 images, batch size 5) ended the first epoch with 'Error: unexpected ValueError: Expected more than 1
    value per channel when training', exit 1 and a FAILED run. That batch's batch norms now use their running
    statistics (a batch's own are undefined on one value per channel), and the run trains."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "pets"
    for split, count in (("train", 3), ("val", 2), ("test", 2)):
        write_class(folder / split / "ants", count, BRIGHT, rng)
        write_class(folder / split / "bees", count, DARK, rng)
    result = run_cli_in_process(["task=image_classification", "data=image_folder", f"data.path={folder}",
                                 "data.image_size=32", "data.batch_size=5", "data.num_workers=0", "model=torchvision",
                                 "model.name=resnet18", "model.weights=none", "trainer.max_epochs=2",
                                 "logger.mlflow.log_plots=false", "logger.mlflow.log_model=false"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 train / 4 validation / 4 test images" in data_line(result.stdout)
    [run] = runs_in(quick_store)
    assert run.info.status == "FINISHED" and "test/acc" in run.data.metrics


def test_a_checkpoint_of_a_run_is_a_weights_file_for_fine_tuning_on_other_classes(tmp_path, quick_store):
    """model.weights=<a run's best-*.ckpt> (train on one folder, fine-tune on another) was refused with "not a state
    dict of torchvision's resnet18 (unexpected keys: model.network.bn1.bias, ...; missing keys: bn1.bias, ...)": the
    checkpoint holds the network under the run's 'model.network.' and a head of the first run's classes (here behind
    model.dropout's Dropout). Its backbone is now loaded and the head is new."""
    common = ["task=image_classification", "data=image_folder", "data.image_size=32", "data.num_workers=0",
              "model=torchvision", "model.name=resnet18", "trainer.max_epochs=1", "logger=none",
              "callbacks=[model_checkpoint]"]
    first = tutorial_folder(tmp_path / "first", per_class=3, test_per_class=1, modes=False)
    result = run_cli_in_process([*common, f"data.path={first}", "model.weights=none", "model.dropout=0.2"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = (quick_store["outputs"] / "checkpoints").glob("best-*.ckpt")
    pretrained = torch.load(checkpoint, weights_only=True)["state_dict"]
    second = tmp_path / "second"
    for name, levels in (("wasps", BRIGHT), ("flies", DARK), ("moths", (100, 150))):
        write_class(second / name, 4, levels, np.random.default_rng(1))
    store = {**quick_store, "outputs": tmp_path / "fine-tuned"}
    result = run_cli_in_process([*common, f"data.path={second}", f"model.weights={checkpoint}",
                                 "model.freeze_backbone=true"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [tuned] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    tuned = torch.load(tuned, weights_only=True)["state_dict"]
    assert torch.equal(tuned["model.network.layer4.1.conv2.weight"], pretrained["model.network.layer4.1.conv2.weight"])
    assert tuned["model.network.fc.weight"].shape == (3, 512)


def test_one_cycle_keeps_the_backbones_share_of_the_learning_rate_and_the_momentum_set(tmp_path, quick_store):
    """scheduler=onecycle gave every parameter group the one peak ${optimizer.lr}, undoing model.backbone_lr_scale,
    and cycled SGD's momentum between 0.85 and 0.95 where optimizer.momentum=0 was set and logged."""
    folder = tutorial_folder(tmp_path / "pets", per_class=4, test_per_class=1, modes=False)
    result = run_cli_in_process(["task=image_classification", "data=image_folder", f"data.path={folder}",
                                 "data.image_size=16", "data.batch_size=4", "model=torchvision", "model.weights=none",
                                 "model.backbone_lr_scale=0.1", "optimizer=sgd", "optimizer.lr=0.01",
                                 "scheduler=onecycle", "trainer.max_epochs=1", "logger=none",
                                 "callbacks=[model_checkpoint]"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = torch.load(quick_store["outputs"] / "checkpoints" / "last.ckpt", weights_only=True)
    backbone, head = checkpoint["optimizer_states"][0]["param_groups"]
    assert backbone["max_lr"] == pytest.approx(0.001) and head["max_lr"] == pytest.approx(0.01)
    assert backbone["lr"] == pytest.approx(0.1 * head["lr"])
    assert backbone["momentum"] == head["momentum"] == 0.0


def test_named_weights_load_from_torch_hub_cache_and_unfreeze_on_schedule(tmp_path, monkeypatch):
    from pipeline.fine_tuning import UnfreezeBackbone
    from pipeline.models.torchvision import TorchvisionClassifier, cache_path

    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = cache_path(torchvision.models.ResNet18_Weights.DEFAULT)
    assert cached == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    state = resnet18_state_dict(cached)
    model = TorchvisionClassifier((1, 32, 32), 3, name="resnet18", weights="DEFAULT", download=False,
                                  freeze_backbone=True, unfreeze_at_epoch=2, backbone_lr_scale=0.1, dropout=0.2)
    assert torch.equal(model.network.conv1.weight, state["conv1.weight"])
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 3)  # grey images are repeated into RGB
    groups = model.parameter_groups()
    assert [g["lr_scale"] for g in groups] == [0.1, 1.0] and len(groups[1]["params"]) == 2
    callback = UnfreezeBackbone(2)
    for epoch, trainable in ((0, False), (1, False), (2, True), (3, True)):
        callback.on_train_epoch_start(SimpleNamespace(current_epoch=epoch), SimpleNamespace(model=model))
        assert model.backbone_trainable is trainable
        assert all(p.requires_grad for p in model.head_parameters())


def test_a_checkpoint_is_predicted_and_evaluated_after_the_pretrained_weights_file_is_gone(tmp_path, quick_store,
                                                                                          monkeypatch):
    """The checkpoint holds every weight, yet pipeline-predict <checkpoint> built the model with model.weights first:
    with the run's weights file moved away it crashed with Hydra's traceback (exit 1), and pipeline-eval refused
    (model.weights=...: no such file). Both now build the architecture alone; nothing is downloaded."""
    import pandas as pd

    import pipeline.models.torchvision as tv

    folder = tutorial_folder(tmp_path / "hymenoptera", per_class=4, test_per_class=2, modes=False)
    weights = tmp_path / "resnet18.pth"
    resnet18_state_dict(weights)
    result = run_cli_in_process(["task=image_classification", "data=image_folder", f"data.path={folder}",
                                 "data.image_size=32", "data.num_workers=0", "model=torchvision", "model.name=resnet18",
                                 f"model.weights={weights}", "trainer.max_epochs=1", "logger.mlflow.log_plots=false",
                                 "logger.mlflow.log_model=false"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = (quick_store["outputs"] / "checkpoints").glob("best-*.ckpt")
    expected = pd.read_csv(quick_store["outputs"] / "predictions" / "test.csv")
    weights.rename(tmp_path / "moved.pth")
    monkeypatch.setattr(tv, "_download", lambda *args: pytest.fail("downloaded weights a checkpoint holds"))
    output = tmp_path / "predictions.csv"
    code, stdout, stderr = predict_cli([str(checkpoint), "--input", str(folder / "val"), "--output", str(output),
                                        "--no-progress"])
    assert code == 0, stderr[-3000:]
    predicted = pd.read_csv(output)
    assert len(predicted) == 4 and sorted(predicted["prediction"].unique()) <= ["ants", "bees"]
    by_path = dict(zip(predicted["path"], predicted["prediction"]))
    assert all(by_path[path] == label for path, label in zip(expected["path"], expected["prediction"])), (expected,
                                                                                                           predicted)
    code, stdout, stderr = eval_cli([str(checkpoint), "--tracking-uri", quick_store["uri"], "--output-dir",
                                     str(tmp_path / "evaluation")])
    assert code == 0, stderr[-3000:]
    assert "test/acc=" in stdout


def test_an_image_size_a_network_does_not_take_names_the_size_its_weights_were_trained_at():
    """inception_v3 at 32 px was told "torchvision's pretrained weights were trained at 224": its weights were trained
    at 299 (efficientnet_b7's at 600); the line names the model's own size."""
    from pipeline.config import ConfigError
    from pipeline.models.torchvision import TorchvisionClassifier

    with pytest.raises(ConfigError) as refused:
        TorchvisionClassifier((3, 32, 32), 2, name="inception_v3", weights="none", channels_last=False)
    assert str(refused.value).startswith("model.name=inception_v3 does not take 32x32 images (")
    assert str(refused.value).endswith("give it images of a size it takes (data.image_size for image files; "
                                       "torchvision's pretrained weights of inception_v3 were trained at 299x299)")


def test_weights_not_cached_are_refused_before_any_run_naming_url_and_path(tmp_path, quick_store):
    folder = tutorial_folder(tmp_path / "hymenoptera", per_class=3, test_per_class=1, modes=False)
    torch_home = tmp_path / "empty-torch-home"
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(torch_home)
    try:
        result = run_cli_in_process(["task=image_classification", "data=image_folder", f"data.path={folder}",
                                     "model=torchvision", "model.name=efficientnet_b0", "model.download=false"],
                                    quick_store)
    finally:
        os.environ.pop("TORCH_HOME") if previous is None else os.environ.update(TORCH_HOME=previous)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    wanted = torch_home / "hub" / "checkpoints" / "efficientnet_b0_rwightman-7f5810bc.pth"
    assert "model.weights=DEFAULT (IMAGENET1K_V1): the efficientnet_b0 weights are not in torch hub's cache" in line
    assert f"download https://download.pytorch.org/models/{wanted.name} and save it as {wanted}" in line, line
    assert "Data:" not in result.stdout  # refused before the data was read
    assert runs_in(quick_store) == [] and not torch_home.exists()


def test_an_unreadable_weights_file_is_named_as_what_the_user_set_without_torchs_mmap_advice(tmp_path, quick_store,
                                                                                             monkeypatch):
    """A cut-off download in torch hub's cache with model.weights=DEFAULT was refused as 'model.weights=<cache path>:
    not a readable PyTorch state dict (mmap can only be used with files saved with torch.save(...
    _use_new_zipfile_serialization=True) ...)': the user set DEFAULT, not a path, and torch's advice was wrong. Now it
    is the cached download, to delete and download again; a file of the user's own gets how to save one; a state
    dict in torch.save's legacy (non-zip) format, which cannot be memory-mapped, is read."""
    from pipeline.models.torchvision import TorchvisionClassifier

    folder = tutorial_folder(tmp_path / "hymenoptera", per_class=3, test_per_class=1, modes=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_text("hello")
    own = tmp_path / "mine.pth"
    own.write_text("hello")
    common = ["task=image_classification", "data=image_folder", f"data.path={folder}", "model=torchvision",
              "model.download=false"]
    result = run_cli_in_process(common, quick_store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = single_error_line(result.stderr)
    assert line.startswith(f"Error: model.weights=DEFAULT (IMAGENET1K_V1): {cached}, the cached download of these "
                           "weights, is unreadable (cut off while downloading?"), line
    assert line.endswith("delete it and download it again") and "mmap" not in line, line
    result = run_cli_in_process([*common, f"model.weights={own}"], quick_store)
    assert result.returncode == 2, result.stderr[-3000:]
    assert single_error_line(result.stderr) == (f"Error: model.weights={own}: not a readable PyTorch state dict (not a "
                                                "file torch.save wrote); save one with torch.save(model.state_dict(), "
                                                "path)")
    assert runs_in(quick_store) == []
    legacy = tmp_path / "legacy.pth"
    state = resnet18_state_dict(tmp_path / "zip.pth")
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    model = TorchvisionClassifier((3, 32, 32), 2, name="resnet18", weights=str(legacy))
    assert torch.equal(model.network.conv1.weight, state["conv1.weight"])
    # a whole model pickled (torch.save(model)): torch's weights_only advice (with terminal escapes, cut mid-word)
    # was about options this command does not have
    whole = tmp_path / "whole.pth"
    torch.save(torch.nn.Linear(2, 2), whole)
    result = run_cli_in_process([*common, f"model.weights={whole}"], quick_store)
    assert result.returncode == 2, result.stderr[-3000:]
    assert single_error_line(result.stderr) == (
        f"Error: model.weights={whole}: holds a pickled torch.nn.modules.linear.Linear (a whole model saved with "
        "torch.save(model)?), not a state dict, and is not unpickled (that could run any code); save its weights with "
        "torch.save(model.state_dict(), path)")


def test_listing_labels_are_spelled_and_ordered_as_in_tables_and_texts(tmp_path):
    """``1``, `` 1`` and ``1.0`` in a path,label listing are one class (they were three), and numeric classes are in
    numeric order, 2 before 10 (they were in string order: 1, 10, 2), as tables and text files read them."""
    from PIL import Image

    from pipeline.data.image_files import ImageCSV

    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for index, label in enumerate(["1", "1.0", " 1", "2", "2.0", "2 ", "10", "10.0", "10"] * 2):
        levels = {"1": BRIGHT, "2": DARK}.get(label.strip().split(".")[0], (90, 160))
        save(Image.fromarray(pixels(rng, 8, 8, levels)), tmp_path / f"{index}.png")
        lines.append(f"{index}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = ImageCSV(path=str(tmp_path / "labels.csv"), image_size=8, num_workers=0, val_fraction=0.0,
                    test_fraction=0.34, augment=False)
    data.setup()
    assert data.spec.class_names == ["1", "2", "10"]


def test_a_class_folder_named_in_another_unicode_form_is_the_same_class(tmp_path):
    """macOS writes "blé" as e + a combining accent (NFD); a val/ folder so named was refused as a class that
    train/ lacks, with the two names printed alike."""
    import unicodedata

    from PIL import Image

    from pipeline.data.image_files import ImageFolder

    rng = np.random.default_rng(0)
    composed, decomposed = unicodedata.normalize("NFC", "blé"), unicodedata.normalize("NFD", "blé")
    for split, wheat in (("train", composed), ("val", decomposed)):
        for name, levels in ((wheat, BRIGHT), ("orge", DARK)):
            for index in range(4):
                save(Image.fromarray(pixels(rng, 8, 8, levels)), tmp_path / split / name / f"{index}.png")
    data = ImageFolder(path=str(tmp_path), image_size=8, num_workers=0, augment=False)
    data.setup()
    assert data.spec.class_names == [composed, "orge"]
    assert sorted(data.test_split.y.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]


# ----- folders as researchers have them: what is read, what is not, and in which class order -----------------
def folder_module(path: Path, **options):
    from pipeline.data.image_files import ImageFolder

    return ImageFolder(path=str(path), image_size=16, num_workers=0, augment=False, **options)


def test_files_of_other_extensions_are_counted_and_jpeg_by_its_other_names_is_read(tmp_path, quick_store):
    """A class of .jfif files (JPEG) and one of .avif files were left out without a word: 60 images trained as 27,
    the class balance changed, and pipeline-predict answered 9 rows for a folder of 20. JPEG's other names are read
    now, and what is left out is counted by extension, in training and in pipeline-predict."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fruit"
    write_class(folder / "apple", 6, BRIGHT, rng)
    write_class(folder / "leaf", 6, DARK, rng)
    for image in (folder / "apple").glob("*.jpg"):
        image.rename(image.with_suffix(".jfif"))
    (folder / "leaf" / "00.avif").write_bytes(b"\x00\x00\x00\x1cftypavif")
    (folder / "leaf" / "notes.txt").write_text("taken on a cloudy day")
    result = run_cli([*FAST, "data=image_folder", f"data.path={folder}", "trainer.max_epochs=1",
                      "data.val_fraction=0", "data.test_fraction=0.5"], quick_store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert ": 6 train / 0 validation / 6 test images" in data_line(result.stdout), data_line(result.stdout)
    assert f"data.path: {folder}: 2 file(s) left out, not of an image kind read here (1 .avif, 1 .txt); read are " \
        ".jpg .jpeg .jfif" in result.stdout + result.stderr, result.stdout[-3000:]
    checkpoint = quick_store["outputs"] / "checkpoints" / "last.ckpt"
    predicted = run_cli([str(checkpoint), "--input", str(folder / "leaf"), "--output", str(tmp_path / "leaf.csv")],
                        module="pipeline.cli.predict")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert f"--input {folder / 'leaf'}: 2 file(s) left out, not of an image kind read here (1 .avif, 1 .txt)" in \
        predicted.stdout + predicted.stderr, predicted.stderr[-3000:]
    assert len((tmp_path / "leaf.csv").read_text().splitlines()) == 1 + 6


def test_a_file_for_a_folder_and_a_folder_for_a_listing_are_said_to_be_so(tmp_path, quick_store):
    """data=image_folder data.path=photos.zip said 'image folder not found: .../photos.zip' and data=image_csv
    data.path=<the folder> 'CSV file not found: <folder>', of paths that are there: the user looked for a typo."""
    folder = tutorial_folder(tmp_path / "photos", per_class=2, test_per_class=1, modes=False)
    (tmp_path / "photos.zip").write_bytes(b"PK\x03\x04")
    result = run_cli_in_process([*FAST, "data=image_folder", f"data.path={tmp_path / 'photos.zip'}"], quick_store)
    assert result.returncode == 2
    assert single_error_line(result.stderr) == (
        f"Error: data.path: {tmp_path / 'photos.zip'} is a file, not a folder (data=image_folder reads a folder with "
        "one sub-folder per class; unpack an archive first; a CSV of path,label is data=image_csv)")
    result = run_cli_in_process([*FAST, "data=image_csv", f"data.path={folder}"], quick_store)
    assert result.returncode == 2
    assert single_error_line(result.stderr) == (
        f"Error: data.path: {folder} is a folder, not a CSV file (a folder with one sub-folder per class is "
        "data=image_folder)")
    assert runs_in(quick_store) == []


def test_split_folders_without_class_folders_are_refused_naming_them(tmp_path):
    """train/ and test/ holding images directly were taken as two classes named "train" and "test": a model of
    which folder an image came from, test/acc 0.73. A flat, unlabelled test/ beside train/<class>/ (Kaggle's layout)
    ended in "the test split of 'image_folder' is empty; use more rows or other split fractions"."""
    from pipeline.data.base import DataError

    rng = np.random.default_rng(0)
    flat = tmp_path / "flat"
    write_class(flat / "train", 4, BRIGHT, rng)
    write_class(flat / "test", 4, DARK, rng)
    with pytest.raises(DataError, match=rf"data.path: {flat} holds the split folders train/, test/ but "
                                        rf"{flat / 'train'} has no class sub-folders: they would be trained as classes"):
        folder_module(flat).setup()
    kaggle = tmp_path / "kaggle"
    write_class(kaggle / "train" / "cat", 4, BRIGHT, rng)
    write_class(kaggle / "train" / "dog", 4, DARK, rng)
    write_class(kaggle / "test", 5, DARK, rng)
    with pytest.raises(DataError, match=rf"data.path: {kaggle / 'test'} has no class sub-folders \(5 image\(s\) "
                                        r"directly in it: unlabelled\); its images need one sub-folder per class"):
        folder_module(kaggle).setup()


def test_images_outside_class_folders_and_a_replaced_test_folder_are_said(tmp_path, caplog):
    rng = np.random.default_rng(0)
    root = tutorial_folder(tmp_path / "pets", per_class=4, test_per_class=2, modes=False)
    write_class(root / "test" / "ants", 2, BRIGHT, rng)
    write_class(root / "test" / "bees", 2, DARK, rng)
    write_class(root / "unlabeled", 3, DARK, rng)
    write_class(root / "train", 2, DARK, rng)  # two images beside train/'s class folders
    other_test = tutorial_folder(tmp_path / "other", per_class=2, test_per_class=2, modes=False) / "val"
    with caplog.at_level("WARNING"):
        data = folder_module(root, test_path=str(other_test))
        data.setup()
    [line] = [r.getMessage() for r in caplog.records if "not used" in r.getMessage()]
    assert line == (f"data.path: not used: 2 image(s) directly in {root / 'train'} (not in a class folder); the "
                    f"folder {root / 'unlabeled'}/ (not train/, val/ or test/); the folder {root / 'test'}/ "
                    "(data.test_path gives the test images)"), line
    assert len(data.test_split) == 4


def test_numbered_class_folders_are_ordered_by_value_as_listings_are(tmp_path):
    """Class folders 0, 1, 2, 10 were ordered as text (0, 1, 10, 2), an image listing of the same images by value
    (0, 1, 2, 10): task.class_weights=[1,1,1,5] weighted class 2 in one and class 10 in the other."""
    rng = np.random.default_rng(0)
    for name in ("0", "1", "2", "10"):
        write_class(tmp_path / "digits" / name, 3, BRIGHT, rng)
    data = folder_module(tmp_path / "digits", val_fraction=0.0, test_fraction=0.25)
    data.setup()
    assert data.spec.class_names == ["0", "1", "2", "10"]


def test_unreadable_files_are_said_in_words_not_in_library_internals(tmp_path):
    """pipeline-predict --skip-bad-files named a junk file "cannot identify image file <_io.BytesIO object at
    0x7ff...>" and an empty one "both buffer length (0) and count (-1) must not be 0" (training said "empty file")."""
    from pipeline.data.raw_inputs import UnreadableImage, decode_image_file

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.jpg").write_text("<html>a saved web page</html>")
    for name, said in (("empty.png", "empty file"), ("junk.jpg", "not an image file PIL or torchvision can read")):
        with pytest.raises(UnreadableImage) as error:
            decode_image_file(str(tmp_path / name), 3)
        assert str(error.value) == said, str(error.value)


def test_a_weights_file_of_random_bytes_is_refused_without_torchs_advice_to_unpickle_it(tmp_path):
    """model.weights=garbage.pth quoted torch's "Re-running torch.load with weights_only set to False will likely
    succeed ...", cut mid-sentence ("if you got the file )"): advice this command does not take, for a file that is
    no torch file."""
    from pipeline.errors import ConfigError
    from pipeline.models.torchvision import read_state_dict

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(ConfigError) as error:
        read_state_dict(garbage, "model.weights")
    assert str(error.value).startswith(f"model.weights={garbage}: not a readable PyTorch state dict (not a file "
                                       "torch.save wrote"), str(error.value)
    assert "weights_only" not in str(error.value) and str(error.value).endswith("torch.save(model.state_dict(), path)")


def test_a_checkpoint_of_torchvisions_reference_training_scripts_or_of_a_ddp_model_is_a_weights_file(tmp_path):
    """torchvision's references/classification/train.py (and DeiT, ...) save {"model": state dict, "optimizer": ...,
    "epoch": ..., "args": argparse.Namespace}: model.weights=checkpoint.pth was "holds a pickled argparse.Namespace
    (a whole model saved with torch.save(model)?)", and without args "holds no state dict". Its "model" is read."""
    import argparse

    from pipeline.models.torchvision import build_network

    state = resnet18_state_dict(tmp_path / "plain.pth")
    torch.save({"model": state, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}, "epoch": 89,
                "args": argparse.Namespace(lr=0.1, model="resnet18")}, tmp_path / "checkpoint.pth")
    network = build_network("resnet18", str(tmp_path / "checkpoint.pth"))
    assert torch.equal(network.conv1.weight, state["conv1.weight"])
    # the weights of a model wrapped in DataParallel or DistributedDataParallel, saved without unwrapping it
    # ('module.conv1.weight'): "not a state dict of torchvision's resnet18 (unexpected keys: module.bn1.bias, ...)"
    torch.save({f"module.{key}": value for key, value in state.items()}, tmp_path / "ddp.pth")
    network = build_network("resnet18", str(tmp_path / "ddp.pth"))
    assert torch.equal(network.conv1.weight, state["conv1.weight"])


def test_a_run_trained_with_numbered_folders_in_text_order_is_still_evaluated_in_its_order(tmp_path):
    """Numbered class folders are read in value order now (0, 1, 2, 10); a run trained before read them as text
    (0, 1, 10, 2). Its evaluation on the same folders was refused ("the classes [...] are not the ones the model was
    trained on"): the trained run's order is kept, for the labels and the files' order (so the split drawn is its)."""
    rng = np.random.default_rng(0)
    for name in ("0", "1", "2", "10"):
        write_class(tmp_path / "digits" / name, 3, BRIGHT, rng)
    fresh = folder_module(tmp_path / "digits", val_fraction=0.0, test_fraction=0.25, in_memory=False)
    fresh.setup()
    spec = fresh.spec.to_dict()
    spec["class_names"] = ["0", "1", "10", "2"]  # as the run trained before this order was
    old = folder_module(tmp_path / "digits", val_fraction=0.0, test_fraction=0.25, in_memory=False)  # rows: file ids
    assert old.use_fitted(fresh.raw_input_adapter().to_dict(), spec)
    old.setup()
    assert old.spec.class_names == ["0", "1", "10", "2"]
    for split in (old.rows["train"], old.rows["test"]):
        for row, label in zip(split.x.tolist(), split.y.tolist()):
            assert Path(old.row_name(int(row))).parent.name == spec["class_names"][label]


def test_damaged_pngs_are_named_alike_by_training_and_predict_without_libpng_lines_or_a_crash(tmp_path, quick_store):
    """torchvision's PNG decoder crashed the process on a PNG with a flipped byte in its pixel data (a segmentation
    fault after libpng's "IDAT: incorrect data check": a DataLoader worker died, data.skip_bad_files or not, and
    pipeline-predict died without a word), libpng wrote "libpng error: ..." lines to stderr for a damaged header,
    and training (PIL's header check) called that file "not an image file PIL or torchvision can read" where
    pipeline-predict called it damaged PNG data. Each damaged PNG is now refused before libpng sees it, with one
    reason, the same in training's "left out" line and in pipeline-predict's note."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fruit"
    write_class(folder / "apple", 6, BRIGHT, rng)
    write_class(folder / "leaf", 6, DARK, rng)
    good = (folder / "leaf" / "01.png").read_bytes()
    flipped = bytearray(good)
    middle = 41 + (len(good) - 41 - 24) // 2  # in the pixel data of the IDAT chunk at byte 33 (after IHDR)
    flipped[middle:middle + 8] = bytes(b ^ 0xFF for b in flipped[middle:middle + 8])
    header = bytearray(good)
    header[12:16] = b"\x14is\x14"  # the IHDR chunk's type
    damaged = {"leaf/flipped.png": (bytes(flipped), "the IDAT chunk at byte 33 fails its checksum (CRC)"),
               "apple/header.png": (bytes(header), "a chunk of no valid type at byte 8"),
               "leaf/cut.png": (good[:len(good) // 2], "the file ends inside the IDAT chunk at byte 33 (cut short?)")}
    for name, (data, _) in damaged.items():
        (folder / name).write_bytes(data)
    result = run_cli([*FAST, "data=image_folder", f"data.path={folder}", "data.skip_bad_files=true",
                      "trainer.max_epochs=1", "data.val_fraction=0", "data.test_fraction=0.5"], quick_store)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "libpng" not in result.stdout + result.stderr, result.stderr[-3000:]
    for name, (_, why) in damaged.items():
        assert f"Data: left out unreadable image {folder / name} (damaged PNG data: {why}; data.skip_bad_files=true)" \
            in result.stdout, result.stdout[-3000:]
    checkpoint = quick_store["outputs"] / "checkpoints" / "last.ckpt"
    for name, (_, why) in damaged.items():  # one damaged file at a time: refused by name, with training's reason
        only = tmp_path / "one" / name
        only.parent.mkdir(parents=True, exist_ok=True)
        only.write_bytes((folder / name).read_bytes())
        predicted = run_cli([str(checkpoint), "--input", str(only.parent), "--output", str(tmp_path / "one.csv")],
                            module="pipeline.cli.predict")
        assert predicted.returncode == 2, (predicted.returncode, predicted.stderr[-3000:])
        assert "libpng" not in predicted.stdout + predicted.stderr, predicted.stderr[-3000:]
        assert error_line(predicted.stderr).endswith(f"{only}: cannot read the image (damaged PNG data: {why}); "
                                                     "--skip-bad-files leaves such files out"), predicted.stderr
        only.unlink()
    predicted = run_cli([str(checkpoint), "--input", str(folder / "leaf"), "--output", str(tmp_path / "leaf.csv"),
                         "--skip-bad-files"], module="pipeline.cli.predict")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert "libpng" not in predicted.stdout + predicted.stderr, predicted.stderr[-3000:]
    assert "2 unreadable image files" in predicted.stderr, predicted.stderr[-3000:]
    assert len((tmp_path / "leaf.csv").read_text().splitlines()) == 1 + 6
