"""Text models at scale: NBSVM (naive-Bayes-weighted n-grams), pretrained Hugging Face transformers
loaded from a local folder (a tiny randomly initialised BERT the test writes) and the refusal when a
model is neither cached nor downloadable, batches padded only to their longest text, and texts
streamed from disk and tokenised in DataLoader workers."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_for_train, error_line, eval_cli, load_pyfunc, predict_cli, run_cli, run_cli_in_process, runs_in

from pipeline.data.text import TextTSV, TrimmedBatcher, text_lengths, trim_padding
from pipeline.data.text_stream import EpochBatchSampler, LineTexts
from pipeline.models.nbsvm import NBSVM
from pipeline.models.text import BagOfWords, RNNClassifier, TextCNN

POSITIVE = ["great", "good", "fine", "superb", "moving"]
NEGATIVE = ["dull", "bad", "boring", "awful", "flat"]
FILLER = "a the film movie plot acting and was is it this some quite".split()


def write_sentiment_tsv(folder: Path, rows: int = 600, seed: int = 0, noise: float = 0.1, dev: int = 0) -> Path:
    """``train.tsv`` (and ``dev.tsv`` with ``dev`` rows): filler words around one sentiment word; a share
    ``noise`` of the labels flipped, so no model can reach 1.0 and a trivial one gets 0.5."""
    generator = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)

    def lines(count: int) -> list[str]:
        out = ["sentence\tlabel"]
        for i in range(count):
            label = i % 2
            word = generator.choice(POSITIVE if label else NEGATIVE)
            before = " ".join(generator.choice(FILLER) for _ in range(generator.randint(1, 12)))
            after = " ".join(generator.choice(FILLER) for _ in range(generator.randint(0, 12)))
            shown = label if generator.random() >= noise else 1 - label
            out.append(f"{before} {word} {after}\t{shown}")
        return out

    (folder / "train.tsv").write_text("\n".join(lines(rows)) + "\n", encoding="utf-8")
    if dev:
        (folder / "dev.tsv").write_text("\n".join(lines(dev)) + "\n", encoding="utf-8")
    return folder


def metrics_of(run) -> dict:
    return dict(run.data.metrics)


# ----- NBSVM -------------------------------------------------------------------------------------------
def test_log_count_ratios_are_those_of_the_paper():
    """r = log((p / |p|_1) / (q / |q|_1)), p and q the smoothed document frequencies of the positive and
    negative texts; a text counts a word once; a feature no training text has gets 0."""
    model = NBSVM((4,), 1, vocab_size=6, max_n=1, smoothing=1.0)
    tokens = torch.tensor([[2, 2, 3, 0], [2, 4, 0, 0], [5, 0, 0, 0]])  # 0 is padding
    labels = torch.tensor([1, 1, 0])
    model.set_feature_counts(model.count_features(tokens, labels))
    # features 2..5 were seen; positive document frequencies 2,1,1,0; negative 0,0,0,1
    p = np.array([2, 1, 1, 0]) + 1.0
    q = np.array([0, 0, 0, 1]) + 1.0
    expected = np.log(p / p.sum()) - np.log(q / q.sum())
    assert torch.allclose(model.ratios[2:, 0].double(), torch.tensor(expected), atol=1e-6)
    assert model.ratios[0, 0] == 0 and model.ratios[1, 0] == 0  # padding and the never-seen id 1
    # untrained weights (all 1): the logit is the naive-Bayes score
    assert torch.allclose(model(tokens[:1])[0, 0], model.ratios[[2, 3], 0].sum())


def test_nbsvm_trains_through_the_cli_and_beats_the_majority_class(store, tmp_path):
    data = write_sentiment_tsv(tmp_path / "data", rows=800, noise=0.1)
    result = run_cli(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=nbsvm",
                      "model.ngram_buckets=65536", "trainer.max_epochs=2", "optimizer.lr=0.01"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    accuracy = metrics_of(run)["test/acc"]
    assert accuracy > 0.8, accuracy  # labels are 10 % noise: the majority class gets 0.5
    # the ratios in the best checkpoint are those of the training split alone
    output = store["outputs"]
    [checkpoint] = (output / "checkpoints").glob("best-*.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]["model.ratios"]
    datamodule = TextTSV(path=str(data), seed=42)
    datamodule.setup()
    recount = NBSVM((64,), 1, vocab_size=datamodule.spec.vocab_size, ngram_buckets=65536)
    recount.set_feature_counts(recount.count_features(datamodule.train_split.x, datamodule.train_split.y))
    assert torch.equal(saved, recount.ratios)
    everything = NBSVM((64,), 1, vocab_size=datamodule.spec.vocab_size, ngram_buckets=65536)
    all_rows = [datamodule.train_split, datamodule.val_split, datamodule.test_split]
    everything.set_feature_counts(everything.count_features(torch.cat([s.x[:, :64] for s in all_rows]),
                                                            torch.cat([s.y for s in all_rows])))
    assert not torch.equal(saved, everything.ratios)


def test_character_ngrams_are_those_of_each_word_as_scikit_learn_takes_them():
    """model.char_ngrams=[2, 4]: a text's features are its words, its bigrams and the character n-grams of each
    word padded by a space on both sides (scikit-learn's char_wb analyser), each counted once per text;
    [UNK] and padding add none."""
    from sklearn.feature_extraction.text import CountVectorizer

    from pipeline.models.nbsvm import char_ngram_id

    vocabulary = ["[PAD]", "[UNK]", "good", "goods", "a", "!"]
    model = NBSVM((6,), 1, vocab_size=6, max_n=2, ngram_buckets=100, char_ngrams=[2, 4], char_buckets=1 << 20,
                  vocabulary=vocabulary)
    tokens = torch.tensor([[2, 3, 2, 4, 5, 0], [1, 0, 0, 0, 0, 0]])  # "good goods good a !", "[UNK]"
    ids = set(model.feature_ids(tokens)[0].tolist()) - {0}
    chars = {i for i in ids if i >= model.char_offset}
    analyzer = CountVectorizer(analyzer="char_wb", ngram_range=(2, 4)).build_analyzer()
    assert chars == {model.char_offset + char_ngram_id(g, model.char_buckets) for g in analyzer("good goods good a !")}
    assert len(chars) == len(set(analyzer("good goods good a !")))  # no two n-grams share a bucket here
    words, bigrams = ids & {2, 3, 4, 5}, ids - chars - {2, 3, 4, 5}
    assert words == {2, 3, 4, 5} and len(bigrams) == 4  # good goods, goods good, good a, a !
    assert set(model.feature_ids(tokens)[1].tolist()) == {0, 1}  # [UNK]: the word id only
    with pytest.raises(ValueError, match="vocabulary"):
        NBSVM((6,), 1, vocab_size=6, char_ngrams=[2, 4])
    with pytest.raises(ValueError, match=r"char_ngrams must be \[shortest, longest\]"):
        NBSVM((6,), 1, vocab_size=6, char_ngrams=[4, 2], vocabulary=vocabulary)


def test_nbsvm_packs_its_features_in_training_and_exports_with_a_free_batch_size():
    """Training packs each text's feature ids to the left (fewer slots; the width depends on the data), evaluation
    keeps every slot (static shapes): the same ids, the same logits, and the evaluation graph traces with
    torch.export, so the logged model is a pt2 program that loads without the pipeline package."""
    vocabulary = ["[PAD]", "[UNK]", *(f"w{i}" for i in range(38))]
    model = NBSVM((16,), 1, vocab_size=40, max_n=3, ngram_buckets=101, char_ngrams=[2, 3], char_buckets=257,
                  vocabulary=vocabulary)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 40, (8, 16), generator=generator)
    tokens[torch.arange(16).expand(8, 16) >= torch.randint(1, 17, (8, 1), generator=generator)] = 0
    tokens[:, 5] = tokens[:, 2]  # repeats
    model.set_feature_counts(model.count_features(tokens, torch.arange(8) % 2))
    with torch.no_grad():
        model.weights.uniform_(0.5, 1.5, generator=generator)
    packed, full = model.feature_ids(tokens, packed=True), model.feature_ids(tokens)
    assert packed.shape[1] < full.shape[1]
    for row in range(8):
        assert sorted(set(packed[row].tolist()) - {0}) == sorted(set(full[row].tolist()) - {0})
        assert (packed[row] != 0).sum() == (full[row] != 0).sum()  # each feature once in both
    with torch.no_grad():
        trained_view = model.train()(tokens)
        evaluated = model.eval()(tokens)
    assert torch.allclose(trained_view, evaluated, atol=1e-5)
    program = torch.export.export(model, (tokens[:4],), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    assert torch.allclose(program.module()(tokens), evaluated, atol=1e-5)


def test_nbsvm_with_character_ngrams_trains_through_the_cli_and_its_model_takes_texts(store, tmp_path):
    """The vocabulary reaches NBSVM from the data (and no other text model); the logged model and a model
    rebuilt from the checkpoint answer alike, and score the run's test/acc."""
    import pandas as pd

    from pipeline.cli.predict import main as predict_main

    data = write_sentiment_tsv(tmp_path / "data", rows=600, dev=120)
    (data / "dev.tsv").rename(data / "test.tsv")
    result = run_cli(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=nbsvm", "model.char_ngrams=[2,4]",
                      "model.ngram_buckets=4096", "model.char_buckets=4096", "trainer.max_epochs=2",
                      "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    accuracy = metrics_of(run)["test/acc"]
    assert accuracy > 0.8, accuracy
    test = pd.read_csv(data / "test.tsv", sep="\t")
    model = load_pyfunc(store, run.info.run_id)
    by_mlflow = model.predict(pd.DataFrame({"sentence": test["sentence"]}))
    assert float((by_mlflow["prediction"] == test["label"].astype(str)).mean()) == pytest.approx(accuracy, abs=1e-6)
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    output = tmp_path / "predictions.csv"
    try:
        predict_main([str(checkpoint), "--input", str(data / "test.tsv"), "--output", str(output)])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    assert pd.read_csv(output)["prediction"].astype(str).tolist() == by_mlflow["prediction"].tolist()
    # texts that a table reader would take for missing values, and quote characters in a TSV (no quoting in
    # training): every row is predicted, as the text written, as the logged model predicts that text
    texts = ["NA", "None", "?", "null", '" great film', 'he said "awful" twice', "n/a", test["sentence"][0]]
    (tmp_path / "new.tsv").write_text("sentence\n" + "\n".join(texts) + "\n")
    (tmp_path / "new.csv").write_text("id,sentence\n" + "\n".join(f'{i},"{t.replace(chr(34), 2 * chr(34))}"'
                                                                   for i, t in enumerate(texts)) + "\n")
    expected = model.predict(pd.DataFrame({"sentence": texts}))["probability_1"].to_numpy()
    for name in ("new.tsv", "new.csv"):
        output = tmp_path / f"{name}.predictions.csv"
        try:
            predict_main([str(checkpoint), "--input", str(tmp_path / name), "--output", str(output), "--keep",
                          "sentence"])
        except SystemExit as exit_:
            assert exit_.code in (0, None)
        predicted = pd.read_csv(output, keep_default_na=False)
        assert predicted["sentence"].tolist() == texts, name
        assert predicted["probability_1"].to_numpy() == pytest.approx(expected, abs=1e-6), name


# ----- padding to the longest text of each batch --------------------------------------------------------
def test_batches_are_padded_to_their_longest_text_and_models_give_the_same_outputs(tmp_path):
    torch.manual_seed(0)
    lengths = torch.tensor([3, 9, 1, 5])
    full = torch.zeros(4, 64, dtype=torch.long)
    for row, length in enumerate(lengths):
        full[row, :length] = torch.randint(2, 50, (int(length),))
    trimmed = trim_padding(full, pad_id=0)
    assert trimmed.shape == (4, 9)
    batches = list(TrimmedBatcher((full, torch.arange(4)), batch_size=2, shuffle=False, pad_id=0))
    assert [b[0].shape[1] for b in batches] == [9, 5]
    assert text_lengths(full, pad_id=0, chunk_rows=3).tolist() == lengths.tolist()
    for tokens, rows in TrimmedBatcher((full, torch.arange(4)), batch_size=3, shuffle=True, seed=1, pad_id=0):
        assert torch.equal(tokens, trim_padding(full[rows], pad_id=0))  # the same cut as scanning the batch
    [(only_pads, _)] = TrimmedBatcher((torch.zeros(2, 6, dtype=torch.long), torch.arange(2)), batch_size=2,
                                      shuffle=False, pad_id=0)
    assert only_pads.shape == (2, 1) == trim_padding(torch.zeros(2, 6, dtype=torch.long), pad_id=0).shape
    models = [BagOfWords((64,), 1, vocab_size=50, embed_dim=8, bigram_buckets=100), TextCNN((64,), 1, vocab_size=50),
              RNNClassifier((64,), 3, vocab_size=50, embed_dim=8, hidden_dim=8),
              NBSVM((64,), 1, vocab_size=50, ngram_buckets=1000)]
    models[-1].ratios.normal_()  # non-trivial ratios
    for model in models:
        model.eval()
        with torch.no_grad():
            assert torch.allclose(model(full), model(trimmed), atol=1e-5), type(model).__name__
    # the RNN's cut at the longest text is left out while torch.export traces it: it was saved pickled (needing this
    # package to load) after a 27-line dump of the graph it could not trace
    from pipeline.tracking.raw_model import export_predictor

    rnn = models[2]
    assert export_predictor(rnn, full, tmp_path / "rnn.pt2") == "pt2"
    with torch.no_grad():
        assert torch.allclose(torch.export.load(tmp_path / "rnn.pt2").module()(full), rnn(full), atol=1e-6)


# ----- texts streamed from disk --------------------------------------------------------------------------
def test_streamed_reader_reads_rows_lazily_and_batches_as_in_memory(tmp_path, capsys):
    data = write_sentiment_tsv(tmp_path / "data", rows=3000, dev=200)
    in_memory = TextTSV(path=str(data), seed=3, batch_size=64, in_memory=True)
    streamed = TextTSV(path=str(data), seed=3, batch_size=64, in_memory=False, num_workers=2)
    in_memory.setup()
    streamed.setup()
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Data: ")]
    assert lines[0].startswith("Data: text_tsv in memory: ")  # the data line says which of the two it is
    assert lines[1].startswith("Data: text_tsv streamed (read and tokenised per batch): ")
    assert all(isinstance(part, LineTexts) for part in streamed.texts.parts)  # rows stay on disk
    assert streamed.streaming and not in_memory.streaming
    assert len(streamed.texts) == 3200 and streamed.texts_of(torch.tensor([0, 3199])) == in_memory.texts_of(
        torch.tensor([0, 3199]))
    assert streamed.spec.vocab_size == in_memory.spec.vocab_size  # the same word-level vocabulary
    # the same shuffled batches, tokenised in 2 worker processes, each padded to its longest text
    for streamed_batch, memory_batch in zip(streamed.train_dataloader(), in_memory.train_dataloader()):
        assert torch.equal(streamed_batch[0], memory_batch[0]) and torch.equal(streamed_batch[1], memory_batch[1])
    assert len(streamed.train_dataloader()) == len(in_memory.train_dataloader())
    # example input of the logged model: padded to max_length
    assert streamed.example_input().shape == (4, 64)


def test_imdb_reviews_stream_from_their_files(tmp_path):
    from pipeline.data.text import IMDB
    from pipeline.data.text_stream import FileTexts

    generator = random.Random(1)
    for part in ("train", "test"):
        for label, words in (("pos", POSITIVE), ("neg", NEGATIVE)):
            folder = tmp_path / "aclImdb" / part / label
            folder.mkdir(parents=True)
            for i in range(30):
                filler = " ".join(generator.choice(FILLER) for _ in range(generator.randint(3, 40)))
                (folder / f"{i}_1.txt").write_text(f"{filler} {generator.choice(words)}.<br /><br />{filler}")
    in_memory = IMDB(path=str(tmp_path / "aclImdb"), in_memory=True, batch_size=16)
    streamed = IMDB(path=str(tmp_path / "aclImdb"), in_memory=False, batch_size=16)
    in_memory.setup()
    streamed.setup()
    assert all(isinstance(part, FileTexts) for part in streamed.texts.parts)
    assert streamed.texts_of(torch.arange(120)) == in_memory.texts_of(torch.arange(120))
    assert not any("<br" in text for text in streamed.texts_of(torch.arange(120)))
    for split in ("val_split", "test_split"):
        streamed_batches = list(streamed.evaluation_batches(getattr(streamed, split)))
        memory_batches = list(in_memory.evaluation_batches(getattr(in_memory, split)))
        assert len(streamed_batches) == len(memory_batches)
        for (xs, ys), (xm, ym) in zip(streamed_batches, memory_batches):
            assert torch.equal(xs, xm) and torch.equal(ys, ym)


def test_sampler_shards_each_epoch_disjointly_across_ranks():
    shards = [list(EpochBatchSampler(103, 10, shuffle=True, seed=5, rank=rank, world_size=2)) for rank in (0, 1)]
    rows = [sorted(i for batch in shard for i in batch) for shard in shards]
    assert len(rows[0]) == len(rows[1]) == 52  # padded by wrapping around, like DistributedSampler
    assert set(rows[0]) | set(rows[1]) == set(range(103))
    sampler = EpochBatchSampler(103, 10, shuffle=True, seed=5)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # deterministic per seed + epoch


def test_streaming_refuses_csv_and_names_the_file(tmp_path):
    folder = tmp_path / "csvdata"
    folder.mkdir()
    (folder / "train.csv").write_text("sentence,label\n\"a, good film\",1\nbad,0\n")
    from pipeline.data.base import DataError

    with pytest.raises(DataError, match=r"train\.csv: streamed reading .* takes \.tsv files"):
        TextTSV(path=str(folder), in_memory=False).setup()


def test_a_streamed_run_gives_the_metrics_of_the_in_memory_run(store, tmp_path):
    from pipeline.train import train

    data = write_sentiment_tsv(tmp_path / "data", rows=1200)
    common = ["task=sentiment", "data=text_tsv", f"data.path={data}", "model=bow", "trainer.max_epochs=2",
              "logger=none", "trainer.enable_progress_bar=false"]
    in_memory = train(compose_for_train(store, [*common, "data.in_memory=true"]))
    store["outputs"] = tmp_path / "outputs-streamed"
    streamed = train(compose_for_train(store, [*common, "data.in_memory=false", "data.num_workers=1"]))
    assert streamed.keys() == in_memory.keys()
    for key, value in in_memory.items():
        if "time" not in key and "per_s" not in key:  # train() also returns the epochs' timings
            assert streamed[key] == pytest.approx(value, abs=1e-5), key


def test_a_streamed_run_with_dropout_is_the_same_with_any_worker_count_and_when_resumed(store, tmp_path):
    """Streamed texts with dropout: the loader drew its base seed from the global RNG (dropout's) whenever an iterator
    started, every epoch without workers and once with persistent ones, again after a resume. So data.num_workers=0
    and 2 trained otherwise (test/acc 0.628 against 0.617 on MR), and a run resumed from last.ckpt did not give the
    uninterrupted run's metrics, though the README says it does."""
    from pipeline.train import train

    data = write_sentiment_tsv(tmp_path / "data", rows=600)
    common = ["task=sentiment", "data=text_tsv", f"data.path={data}", "model=bow", "model.dropout=0.5",
              "data.in_memory=false", "data.batch_size=32", "logger=none", "trainer.enable_progress_bar=false"]

    def run(folder: str, *overrides: str) -> dict:
        store["outputs"] = tmp_path / folder
        metrics = train(compose_for_train(store, [*common, *overrides]))
        return {k: v for k, v in metrics.items() if "time" not in k and "per_s" not in k}

    with_workers = run("two", "data.num_workers=2", "trainer.max_epochs=3")
    without = run("none", "data.num_workers=0", "trainer.max_epochs=3")
    run("first", "data.num_workers=2", "trainer.max_epochs=1")
    resumed = run("resumed", "data.num_workers=2", "trainer.max_epochs=3",
                  f"ckpt_path={tmp_path / 'first' / 'checkpoints' / 'last.ckpt'}")
    for other in (without, resumed):
        for key in ("val/loss", "test/loss", "test/acc", "train/loss"):
            assert other[key] == pytest.approx(with_workers[key], abs=1e-6), (key, other is resumed, other[key], with_workers[key])


# ----- pretrained transformers -------------------------------------------------------------------------
def write_tiny_bert(folder: Path) -> Path:
    """A randomly initialised 2-layer BERT (hidden size 32) and a WordPiece tokenizer over the test's
    words, saved with save_pretrained: what a downloaded model folder holds, a few hundred kB."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *FILLER]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=128).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_transformer_from_a_local_folder_fine_tunes_through_the_cli(store, tmp_path):
    """A model folder fine-tunes through the CLI; its train.log holds transformers' load report as plain text: the
    ANSI colour codes it prints to the console (``\\x1b[1m``) were copied into the file too, unreadable there and in
    the logged artifact."""
    model_dir = write_tiny_bert(tmp_path / "tiny-bert")
    data = write_sentiment_tsv(tmp_path / "data", rows=300, dev=60)
    result = run_cli(["experiment=finetune_transformer", f"model.name={model_dir}", "data=text_tsv",
                      f"data.path={data}", "trainer.max_epochs=1", "optimizer.lr=1e-3"], store,
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")})
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    metrics = metrics_of(run)
    for key in ("train/loss", "val/loss", "val/acc", "test/acc", "test/loss"):
        assert np.isfinite(metrics[key]), key
    assert run.data.params["model.name"] == str(model_dir)
    assert run.data.params["data.tokenizer"] == str(model_dir)  # the model's own tokenizer, by default
    # the logged tokenizer is the model's WordPiece one ([CLS] ... [SEP]), not a word-level one trained here
    saved = json.loads((store["outputs"] / "data" / "tokenizer.json").read_text())
    assert saved["model"]["type"] == "WordPiece" and "[CLS]" in saved["model"]["vocab"]
    log = (store["outputs"] / "train.log").read_text()
    assert "BertForSequenceClassification LOAD REPORT from:" in log and "\x1b" not in log, log[-3000:]
    assert "\x1b[1mBertForSequenceClassification LOAD REPORT" in result.stderr  # the console keeps its colours


def test_predicting_from_a_checkpoint_whose_model_folder_has_moved_is_one_error_line(store, tmp_path, monkeypatch):
    """The checkpoint holds the weights, but the run saved nothing of the architecture that model.name's folder holds
    (its config.json): pipeline-predict <checkpoint> crashed with Hydra's InstantiationException traceback (exit 1).
    Now one line names model.name and the ways round it (the folder back, or the run id's logged model); exit 2."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model_dir = write_tiny_bert(tmp_path / "tiny-bert")
    data = write_sentiment_tsv(tmp_path / "data", rows=60, dev=20)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=transformer",
                                 f"model.name={model_dir}", "data.max_length=16", "trainer.max_epochs=1",
                                 "logger.mlflow.log_plots=false", "logger.mlflow.log_model=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    model_dir.rename(tmp_path / "moved")
    texts = tmp_path / "texts.txt"
    texts.write_text("a great film\na dull plot\n")
    output = tmp_path / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(texts), "--output", str(output), "--no-progress"])
    assert code == 2, stderr[-3000:]
    line = error_line(stderr)
    assert line.startswith(f"Error: {checkpoint}: cannot rebuild the run's model: model.name={model_dir}: no such "
                           "folder"), line
    assert f"predict with the run's id ({run.info.run_id})" in line, line
    assert not output.exists()


def test_a_transformer_rebuilt_for_a_checkpoints_weights_reports_no_new_head(tmp_path):
    """pipeline-predict <checkpoint> of a fine-tuned transformer printed transformers' LOAD REPORT, "classifier.weight
    MISSING ... newly initialized", though the checkpoint's trained head replaces it at once. Training keeps the
    report (its head is new); a model rebuilt for a checkpoint's weights does not print it."""
    import logging

    from pipeline.models import weights_from_checkpoint
    from pipeline.models.transformer import PretrainedTransformer

    folder = write_tiny_bert(tmp_path / "tiny-bert")
    said: list[str] = []

    class Kept(logging.Handler):
        def emit(self, record):
            said.append(record.getMessage())

    handler = Kept(level=logging.WARNING)
    logging.getLogger("transformers").addHandler(handler)
    try:
        PretrainedTransformer((16,), 3, vocab_size=40, name=str(folder), bf16=False)
        assert any("LOAD REPORT" in line for line in said), said  # trained: its new head is news
        said.clear()
        with weights_from_checkpoint():
            PretrainedTransformer((16,), 3, vocab_size=40, name=str(folder), bf16=False)
        assert not any("LOAD REPORT" in line for line in said), said
    finally:
        logging.getLogger("transformers").removeHandler(handler)


def test_a_model_neither_cached_nor_downloadable_is_refused_before_any_run(store, tmp_path):
    result = run_cli(["experiment=finetune_transformer", "model.name=pipeline-tests/not-a-cached-model",
                      "data=text_tsv", f"data.path={write_sentiment_tsv(tmp_path / 'data', rows=20)}"], store,
                     env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-home")})
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("Error: model.name=pipeline-tests/not-a-cached-model: not in the Hugging Face cache")
    assert "HF_HUB_OFFLINE=1" in errors[0] and str(tmp_path / "empty-hf-home") in errors[0]
    assert "hf download pipeline-tests/not-a-cached-model" in errors[0]
    assert runs_in(store) == []


def test_a_model_folder_without_its_tokenizer_or_too_short_for_max_length_is_refused(tmp_path):
    """A folder saved with the model alone: transformers made a tokenizer of its 5 special tokens, every word was
    [UNK], and the run learned nothing with exit 0. A data.max_length beyond the model's positions failed mid-run."""
    from pipeline.config import ConfigError
    from pipeline.data.base import DataError
    from pipeline.data.text import load_pretrained_tokenizer
    from pipeline.models.transformer import PretrainedTransformer

    folder = write_tiny_bert(tmp_path / "tiny-bert")
    tokenizer, _ = load_pretrained_tokenizer(str(folder), 64)
    assert tokenizer.get_vocab_size() > 10
    with pytest.raises(ConfigError, match=r"data.max_length=256 is longer than model.name=.* takes \(128 positions"):
        PretrainedTransformer((256,), 1, vocab_size=40, name=str(folder), bf16=False)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(DataError, match="the tokenizer has no words, only its special tokens.*the folder holds no "
                                        "tokenizer files"):
        load_pretrained_tokenizer(str(folder), 64)
    # a tokenizer.json made before its words were added was said to be no tokenizer file at all
    from tokenizers import Tokenizer, models

    specials = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    Tokenizer(models.WordLevel(specials, unk_token="[UNK]")).save(str(folder / "tokenizer.json"))
    with pytest.raises(DataError, match="the folder's tokenizer.json holds no vocabulary"):
        load_pretrained_tokenizer(str(folder), 64)


def test_transformer_outputs_do_not_depend_on_trailing_padding(tmp_path):
    from pipeline.models.transformer import PretrainedTransformer

    folder = write_tiny_bert(tmp_path / "tiny-bert")
    model = PretrainedTransformer((64,), 1, vocab_size=5 + len(POSITIVE + NEGATIVE + FILLER), pad_id=0,
                                  name=str(folder), bf16=False).eval()
    tokens = torch.zeros(3, 64, dtype=torch.long)
    for row, length in enumerate((4, 11, 7)):
        tokens[row, :length] = torch.randint(5, 20, (length,))
    with torch.no_grad():
        assert torch.allclose(model(tokens), model(trim_padding(tokens, 0)), atol=1e-5)


def test_raw_input_adapter_tokenizes_a_text_column_as_training_did(tmp_path):
    import pickle

    import pandas as pd

    datamodule = TextTSV(path=str(write_sentiment_tsv(tmp_path / "data", rows=200)), max_length=16)
    datamodule.setup()
    adapter = pickle.loads(pickle.dumps(datamodule.raw_input_adapter()))
    texts = ["a great film", "the plot was dull and flat , unseenword", ""]
    assert torch.equal(adapter.to_tensor(pd.DataFrame({"sentence": texts})), datamodule.encode(texts))
    from pipeline.data.raw_inputs import RawInputError, TextInput

    reloaded = TextInput.from_dict(json.loads(json.dumps(adapter.to_dict())))  # the logged model's copy
    assert torch.equal(reloaded.transform(pd.DataFrame({"sentence": texts})), datamodule.encode(texts))
    with pytest.raises(RawInputError, match="no 'sentence' column"):
        adapter.to_tensor(pd.DataFrame({"review": texts}))


def test_texts_longer_than_max_length_are_counted_on_the_data_line(store, tmp_path):
    """data.max_length (64 by default) cut every longer text to its first tokens without a word: reviews of 80 words
    whose sentiment came last trained to chance."""
    data = write_sentiment_tsv(tmp_path / "data", rows=200, dev=40)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=bow",
                                 "data.max_length=3", "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"; [\d,]+ of [\d,]+ texts \(\d+ %\) are longer than data\.max_length=3 tokens: only their first 3 "
                     r"are read \(raise data\.max_length to read more\)", result.stdout), result.stdout[-2000:]
    default = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=bow",
                                  "trainer.max_epochs=1", "logger=none"], store)
    assert default.returncode == 0 and "longer than data.max_length" not in default.stdout


def test_the_logged_text_model_takes_texts_and_answers_like_pipeline_predict(store, tmp_path, capsys):
    """runs:/<id>/model is a pyfunc model on a ``text`` column; pipeline-predict on a .txt file (run id) and on
    a TSV (checkpoint) give the same answers, and on the test file they score the run's test/acc."""
    import pandas as pd

    from pipeline.cli.predict import main as predict_main

    data = write_sentiment_tsv(tmp_path / "data", rows=600, dev=120)
    (data / "dev.tsv").rename(data / "test.tsv")
    result = run_cli(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=bow", "trainer.max_epochs=3",
                      "logger.mlflow.log_plots=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    test = pd.read_csv(data / "test.tsv", sep="\t")
    model = load_pyfunc(store, run.info.run_id)
    by_mlflow = model.predict(pd.DataFrame({"sentence": test["sentence"]}))  # data.text_column, as in training
    assert list(by_mlflow.columns) == ["prediction", "probability_0", "probability_1"]
    accuracy = float((by_mlflow["prediction"] == test["label"].astype(str)).mean())
    assert accuracy == pytest.approx(metrics_of(run)["test/acc"], abs=1e-6)
    # predictions/test.csv names each test row's text, so a misclassified one can be read
    tested = pd.read_csv(store["outputs"] / "predictions" / "test.csv", keep_default_na=False)
    # the texts under the column the model reads (it was "text"): the file is an input pipeline-predict takes
    assert list(tested.columns[:3]) == ["row", "sentence", "target"]
    assert tested["sentence"].tolist() == test["sentence"].tolist()
    assert tested["target"].astype(str).tolist() == test["label"].astype(str).tolist()
    # a dict of lists (a serving request's form): one answer per text, not one for the list's printed form
    by_dict = model.predict({"sentence": test["sentence"][:5].tolist()})
    assert by_dict.equals(by_mlflow.iloc[:5].reset_index(drop=True)), by_dict

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(test["sentence"]) + "\n")
    out_run, out_ckpt = tmp_path / "by_run.csv", tmp_path / "by_checkpoint.csv"
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    for source, source_input, output in ((run.info.run_id, texts, out_run), (str(checkpoint), data / "test.tsv", out_ckpt)):
        try:
            predict_main([source, "--input", str(source_input), "--output", str(output), "--tracking-uri", store["uri"],
                          *(["--keep", "label"] if source_input.suffix == ".tsv" else [])])
        except SystemExit as exit_:
            assert exit_.code in (0, None)
    by_run, by_checkpoint = pd.read_csv(out_run), pd.read_csv(out_ckpt)
    assert by_run["sentence"].tolist() == test["sentence"].tolist()  # a .txt input keeps its texts
    assert by_run["prediction"].astype(str).tolist() == by_mlflow["prediction"].tolist()
    assert by_checkpoint["prediction"].astype(str).tolist() == by_mlflow["prediction"].tolist()
    assert by_checkpoint["probability_1"].to_numpy() == pytest.approx(by_mlflow["probability_1"].to_numpy(), abs=1e-6)

    # empty lines keep their rows (answers pair with lines) and are named: one answer for all, from no words
    gaps, out_gaps = tmp_path / "gaps.txt", tmp_path / "gaps.csv"
    gaps.write_text(f"{test['sentence'][0]}\n\n   \n{test['sentence'][1]}\n" + "film " * 100 + "\n")
    capsys.readouterr()
    try:
        predict_main([run.info.run_id, "--input", str(gaps), "--output", str(out_gaps), "--tracking-uri", store["uri"]])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    answered = pd.read_csv(out_gaps, keep_default_na=False)
    assert len(answered) == 5 and answered["prediction"].astype(str).tolist()[:4:3] == by_mlflow["prediction"][:2].tolist()
    said = capsys.readouterr().err
    assert (f"Note: 2 empty texts in {gaps} (rows 1, 2; 0 is the first line): the model answered them from no words, "
            "the same answer for every empty text") in said
    # a text longer than max_length tokens is read up to it: said (it was cut without a word)
    assert (f"Note: 1 of the 5 texts of {gaps} is longer than the model's max_length (64 tokens, data.max_length in "
            "training): it answered from their first 64") in said, said
    # a .txt that is not UTF-8 is read as training reads it, with the notice a table gets (it had none)
    latin, out_latin = tmp_path / "latin.txt", tmp_path / "latin.csv"
    latin.write_bytes(f"{test['sentence'][0]}\ncaf\u00e9 cr\u00e8me\n".encode("cp1252"))
    try:
        predict_main([run.info.run_id, "--input", str(latin), "--output", str(out_latin), "--tracking-uri", store["uri"]])
    except SystemExit as exit_:
        assert exit_.code in (0, None)
    said = capsys.readouterr().err
    assert f"Note: {latin} is not UTF-8 (byte " in said and "read as Windows-1252" in said, said
    assert pd.read_csv(out_latin)["sentence"].tolist() == [test["sentence"][0], "caf\u00e9 cr\u00e8me"]


def test_one_text_csv_is_split_into_train_validation_and_test_and_predicted(store, tmp_path):
    """``data.path`` may name one labelled file (texts with quoted commas, named columns), as a researcher's own
    export comes: it is split as a folder with only train.csv is, and pipeline-predict answers on it."""
    import pandas as pd

    generator = random.Random(3)
    rows = []
    for i in range(600):
        label = i % 2
        word = generator.choice(POSITIVE if label else NEGATIVE)
        rows.append({"id": i, "review": f"{' '.join(generator.sample(FILLER, 4))}, {word}, {generator.choice(FILLER)}",
                     "sentiment": "pos" if label else "neg"})
    reviews = tmp_path / "reviews.csv"
    pd.DataFrame(rows).to_csv(reviews, index=False)
    assert '",' in reviews.read_text()  # quoted texts with commas
    common = ["task=sentiment", "data=text_tsv", "data.text_column=review", "data.label_column=sentiment", "logger=none"]
    result = run_cli_in_process([*common, f"data.path={reviews}", "model=nbsvm"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    sizes = re.search(r"Data: text_tsv in memory: ([\d,]+) train / ([\d,]+) validation / ([\d,]+) test rows", result.stdout)
    assert sizes and sum(int(n.replace(",", "")) for n in sizes.groups()) == 600, result.stdout[-2000:]
    assert float(re.search(r"test/acc=([\d.]+)", result.stdout).group(1)) > 0.9, result.stdout[-2000:]

    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    output = tmp_path / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(reviews), "--output", str(output), "--keep", "id"])
    assert code == 0, stderr[-2000:]
    predicted = pd.read_csv(output)
    assert predicted["id"].tolist() == list(range(600)) and set(predicted["prediction"]) <= {"neg", "pos"}
    assert (predicted["prediction"] == pd.DataFrame(rows)["sentiment"]).mean() > 0.9
    # pipeline-eval: the run's test rows again give its test accuracy; a labelled test file of its own
    # (data.test_path) is read with the run's vocabulary, not one learned again from the rows the split now leaves
    # for training, so its metrics are those of the model's own predictions on that file
    code, stdout, stderr = eval_cli([str(checkpoint), "--output-dir", str(tmp_path / "evaluation")])
    assert code == 0, stderr[-3000:]
    assert re.search(r"test/acc=([\d.]+)", stdout).group(1) == re.search(r"test/acc=([\d.]+)", result.stdout).group(1)
    labelled = tmp_path / "labelled.csv"
    pd.DataFrame(rows[:150]).to_csv(labelled, index=False)
    reviews.rename(tmp_path / "elsewhere.csv")  # the training file is not needed (nor read)
    code, stdout, stderr = eval_cli([str(checkpoint), f"data.test_path={labelled}", "--output-dir", str(tmp_path / "new")])
    (tmp_path / "elsewhere.csv").rename(reviews)
    assert code == 0 and "Warning" not in stderr, stderr[-3000:]
    assert f"0 train / 0 validation / 150 test rows; test split: {labelled} (data.test_path)" in stdout, stdout[-2000:]
    expected = (predicted["prediction"][:150] == pd.DataFrame(rows[:150])["sentiment"]).mean()
    assert float(re.search(r"test/acc=([\d.]+)", stdout).group(1)) == pytest.approx(expected, abs=6e-5)
    pd.DataFrame([*rows[:3], {**rows[3], "sentiment": "meh"}, *rows[4:20]]).to_csv(tmp_path / "meh.csv", index=False)
    code, _, stderr = eval_cli([str(checkpoint), f"data.test_path={tmp_path / 'meh.csv'}", "--output-dir",
                                str(tmp_path / "refused")])
    # the file and the row named (it said "text_tsv: label 'meh' ...")
    assert code == 2 and error_line(stderr).startswith(
        f"Error: {tmp_path / 'meh.csv'} (data.test_path): label 'meh' (1 row, the first is data row 4) is not a "
        "class the model was trained on"), stderr[-2000:]

    # new texts in a column named otherwise: refused with the flag to use, pasteable (it said "--rename COLUMN=review"
    # though 'comment' is the texts' column as exports name it), then read with it
    comments, renamed = tmp_path / "comments.csv", tmp_path / "renamed.csv"
    pd.DataFrame(rows).rename(columns={"review": "comment"}).to_csv(comments, index=False)
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(comments), "--output", str(renamed)])
    assert code == 2 and error_line(stderr).endswith(
        "its columns are ['id', 'comment', 'sentiment']: --rename comment=review reads its texts as 'review'"), stderr
    pd.DataFrame(rows).rename(columns={"review": "opinion"}).to_csv(comments, index=False)  # a name of one's own
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(comments), "--output", str(renamed)])
    assert code == 2 and error_line(stderr).endswith(
        "its columns are ['id', 'opinion', 'sentiment']: --rename COLUMN=review reads one of them as 'review'"), stderr
    pd.DataFrame(rows).rename(columns={"review": "comment"}).to_csv(comments, index=False)
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(comments), "--output", str(renamed),
                                   "--rename", "comment=review", "--keep", "id"])
    assert code == 0, stderr[-2000:]
    assert pd.read_csv(renamed).equals(predicted)

    # read with the default column names (sentence, label): the error names the keys with this file's columns
    defaults = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={reviews}", "logger=none"], store)
    assert defaults.returncode == 2 and error_line(defaults.stderr) == (
        f"Error: {reviews}:1: no column 'sentence' in the header ['id', 'review', 'sentiment']; "
        "set data.text_column=review data.label_column=sentiment"), defaults.stderr[-2000:]

    # files no column key can fix: the hint says what is wrong with them instead
    headerless, semicolons = tmp_path / "headerless.tsv", tmp_path / "semicolons.csv"
    headerless.write_text("a great film\t1\na dull film\t0\n" * 10)
    semicolons.write_text("sentence;label\na great film;1\na dull film;0\n" * 10)
    for path, expected in (
            (headerless, "no column 'sentence' in the header ['a great film', '1']; the first line looks like data "
                         "('1'), not a header naming the columns; add a header line first, e.g. 'sentence<tab>label'"),
            (semicolons, "no column 'sentence' in the header ['sentence;label']; the file seems separated by ';', "
                         "and a .csv file is read as comma-separated (CSV quoting)")):
        refused = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={path}", "logger=none"], store)
        assert refused.returncode == 2 and expected in error_line(refused.stderr), refused.stderr[-2000:]
        assert "data.text_column=" not in error_line(refused.stderr)

    notes = tmp_path / "reviews.txt"
    notes.write_text("a plain text file\n")
    for path, fragment in ((notes, "is neither a .tsv nor a .csv file"), (tmp_path / "absent.csv", "not found")):
        refused = run_cli_in_process([*common, f"data.path={path}"], store)
        assert refused.returncode == 2 and str(path) in error_line(refused.stderr), refused.stderr[-2000:]
        assert fragment in error_line(refused.stderr), error_line(refused.stderr)


@pytest.mark.parametrize("override,key", [("model.name", "model.name"), ("data.tokenizer", "data.tokenizer")])
def test_a_model_not_cached_with_the_hub_out_of_reach_is_refused_at_once(store, tmp_path, override, key):
    """With downloads on and no internet, a model or tokenizer not in the cache was asked for with retries for about
    a minute (Hugging Face's warnings, one per attempt), then refused as data.tokenizer even where only model.name
    was set. Now refused before any run, naming the key that was set and the host that cannot be reached."""
    name = "pipeline-tests/not-a-cached-model"
    args = (["experiment=finetune_transformer", f"model.name={name}"] if override == "model.name" else
            ["task=sentiment", f"data.tokenizer={name}", "trainer.max_epochs=1"])
    result = run_cli([*args, "data=text_tsv", f"data.path={write_sentiment_tsv(tmp_path / 'data', rows=20)}"], store,
                     env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:1",
                          "HF_HOME": str(tmp_path / "empty-hf-home")})
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr).startswith(
        f"Error: {key}={name}: not in the Hugging Face cache ({tmp_path / 'empty-hf-home'}/hub) and 127.0.0.1 cannot be "
        "reached (")
    assert "thrown while requesting" not in result.stderr  # no retries
    assert runs_in(store) == []


def test_a_tokenizer_that_cannot_be_loaded_is_a_data_error_naming_the_key(monkeypatch, tmp_path):
    import huggingface_hub.constants

    from pipeline.data.base import DataError
    from pipeline.data.text import load_pretrained_tokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as error:
        load_pretrained_tokenizer("pipeline-tests/not-a-cached-tokenizer", 64)
    message = str(error.value)
    assert message.startswith("data.tokenizer=pipeline-tests/not-a-cached-tokenizer: not in the Hugging Face cache")
    assert "hf download pipeline-tests/not-a-cached-tokenizer" in message and "\n" not in message
    with pytest.raises(DataError, match="no such folder"):
        load_pretrained_tokenizer(str(tmp_path / "missing-folder"), 64)


def test_a_max_length_that_leaves_no_room_for_words_is_refused(tmp_path):
    """BERT adds [CLS] and [SEP]: at data.max_length=2 every text was those two tokens, at 1 a traceback."""
    from pipeline.data.base import DataError
    from pipeline.data.text import load_pretrained_tokenizer

    folder = write_tiny_bert(tmp_path / "tiny-bert")
    for length in (1, 2):
        with pytest.raises(DataError, match=rf"data.max_length={length} leaves no room for words: .* adds 2 special "
                                            r"tokens to every text; set data.max_length>2"):
            load_pretrained_tokenizer(str(folder), length)
    tokenizer, _ = load_pretrained_tokenizer(str(folder), 3)
    assert len(tokenizer.encode("great film").ids) == 3


def test_pipeline_eval_of_a_streamed_run_on_a_small_test_file_alone(store, tmp_path):
    """A run whose corpus was streamed (padded per batch) evaluated on a small labelled file of its own, which is
    read in memory (padded to max_length, data.in_memory=true as data.in_memory=auto reads a small file): the
    training folder is gone, the padding does not count as another
    preprocessing, and the metrics are those of the model's own predictions on that file."""
    import pandas as pd

    corpus = write_sentiment_tsv(tmp_path / "corpus", rows=400, seed=1)
    new = write_sentiment_tsv(tmp_path / "new", rows=120, seed=2) / "train.tsv"
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={corpus}", "data.in_memory=false",
                                 "trainer.max_epochs=8", "optimizer.lr=0.01", "logger=none"], store)
    assert result.returncode == 0 and "Data: text_tsv streamed" in result.stdout, result.stderr[-3000:]
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    output = tmp_path / "predictions.csv"
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(new), "--output", str(output)])
    assert code == 0, stderr[-2000:]
    truth = pd.read_csv(new, sep="\t")["label"].astype(str)
    expected = (pd.read_csv(output)["prediction"].astype(str) == truth).mean()
    assert expected > 0.7  # a model that learned something (chance: 0.5)

    (corpus / "train.tsv").unlink()
    code, stdout, stderr = eval_cli([str(checkpoint), f"data.test_path={new}", "data.in_memory=true", "--output-dir",
                                     str(tmp_path / "eval")])
    assert code == 0, stderr[-3000:]
    assert "Data: text_tsv in memory: 0 train / 0 validation / 120 test rows" in stdout, stdout[-2000:]
    assert float(re.search(r"test/acc=([\d.]+)", stdout).group(1)) == pytest.approx(expected, abs=6e-5)


def test_a_run_with_a_pretrained_tokenizer_is_evaluated_where_the_tokenizer_is_not(store, tmp_path):
    """The check that a pretrained tokenizer is at hand also ran for pipeline-eval, which makes the data with the
    run's saved tokenizer and never loads the pretrained one: a run evaluated on a machine without the tokenizer (or
    its Hugging Face cache) was refused."""
    tokenizer = write_tiny_bert(tmp_path / "tiny-bert")
    data = write_sentiment_tsv(tmp_path / "data", rows=200, dev=40)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", f"data.tokenizer={tokenizer}",
                                 "trainer.max_epochs=1", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    tokenizer.rename(tmp_path / "elsewhere")
    code, stdout, stderr = eval_cli([str(checkpoint), "--output-dir", str(tmp_path / "eval")])
    assert code == 0, stderr[-3000:]
    assert "test/acc=" in stdout


def test_pipeline_eval_refuses_overrides_that_would_tokenize_otherwise(store, tmp_path):
    """pipeline-eval <checkpoint> data.max_length=1 (or data.vocab_size, data.lowercase) was tested with the run's
    tokenizer and max_length, the overrides ignored while the evaluation recorded them: refused before any
    evaluation, naming the keys and the run's values; data.eval_batch_size still evaluates."""
    data = write_sentiment_tsv(tmp_path / "data", rows=200, dev=40)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", "trainer.max_epochs=1",
                                 "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")
    code, stdout, stderr = eval_cli([str(checkpoint), "data.max_length=1", "data.vocab_size=5", "data.lowercase=false",
                                     "--output-dir", str(tmp_path / "refused")])
    assert code == 2, (stdout[-2000:], stderr[-2000:])
    assert error_line(stderr).startswith(
        "Error: data.vocab_size=5 (the run's: 20000), data.max_length=1 (the run's: 64), data.lowercase=false (the "
        "run's: true): pipeline-eval tests the model on inputs made as the run made them"), error_line(stderr)
    assert "Evaluating" not in stdout and not (tmp_path / "refused" / "checkpoints").exists()
    code, stdout, stderr = eval_cli([str(checkpoint), "data.max_length=64", "data.eval_batch_size=3",
                                     "--output-dir", str(tmp_path / "eval")])
    assert code == 0 and "test/acc=" in stdout, stderr[-3000:]


@pytest.mark.unit
def test_labels_with_trailing_punctuation_are_a_trained_class_only_where_training_merges_them():
    from pipeline.data.base import onto_classes

    mapping, unseen = onto_classes(["<=50K.", ">50K"], ["<=50K", ">50K"], key="data.target")  # tables merge them
    assert mapping.tolist() == [0, 1] and unseen is None
    mapping, unseen = onto_classes(["neg", "pos!"], ["neg", "pos"])  # texts do not: a class of its own
    assert mapping.tolist() == [0, -1] and unseen == "pos!"


@pytest.mark.unit
def test_the_hub_is_not_probed_through_a_proxy_and_an_unreachable_one_is_named(monkeypatch):
    from pipeline.hub import hub_unreachable

    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
    assert hub_unreachable(timeout=5).startswith("127.0.0.1 cannot be reached (")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # the download goes through it: not tried here
    assert hub_unreachable(timeout=5) is None


def test_text_labels_are_spelled_one_way_and_an_identifier_is_not_a_label(tmp_path, caplog):
    """A test file written from floats (1.0) was refused as holding a label the training file (1) lacks; labels
    differing by case became classes without a word; an id column named as the label trained a class per row."""
    from pipeline.data.base import DataError

    (tmp_path / "train.csv").write_text("id,sentence,label\n" + "".join(
        f"{i},a {'great' if i % 2 else 'dull'} film,{i % 2}\n" for i in range(60)))
    (tmp_path / "test.csv").write_text("id,sentence,label\n1,a great film,1.0\n2,a dull film,0.0\n3,so great,+1\n")
    data = TextTSV(path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv")).load()
    assert data.class_names == ["0", "1"] and data.test.y.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"column 'id' \(data.label_column\) holds 60 different labels in 60 rows"):
        TextTSV(path=str(tmp_path / "train.csv"), label_column="id").load()
    # the training file as its own test file: counted on the data line, as tables count repeated rows
    same = TextTSV(path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "train.csv"))
    same.setup()
    assert "60 test rows (100.0%) repeat a training text exactly" in same.how_split()
    # a vocabulary of no words (every text [UNK]s) was trained on with exit 0
    words = TextTSV(path=str(tmp_path / "train.csv"), min_frequency=100_000)
    with pytest.raises(DataError, match="no word occurs data.min_frequency=100000 times"):
        words.setup()
    # UTF-16 with its byte-order mark (Excel's "Unicode text"): its header read as 'ÿþs\x00e\x00n...'
    (tmp_path / "utf16.csv").write_text((tmp_path / "train.csv").read_text(), encoding="utf-16")
    assert TextTSV(path=str(tmp_path / "utf16.csv")).load().class_names == ["0", "1"]
    # a test file naming its columns otherwise: the hint was to set the column keys, which read the training file too
    (tmp_path / "other.csv").write_text("body,rating\na great film,1\n")
    with pytest.raises(DataError, match="name the test file's columns as the training file's"):
        TextTSV(path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "other.csv")).load()
    (tmp_path / "cased.csv").write_text("sentence,label\n" + "".join(
        f"text {i},{['positive', 'negative', 'Positive'][i % 3]}\n" for i in range(30)))
    with caplog.at_level("WARNING"):
        assert TextTSV(path=str(tmp_path / "cased.csv")).load().class_names == ["Positive", "negative", "positive"]
    assert "differ only by case are different classes: 'Positive' and 'positive'" in caplog.text


def test_a_csv_cell_longer_than_pythons_default_limit_is_read(tmp_path):
    """Python's csv module refuses fields over 128 KiB by default; a long review is a normal text."""
    long = " ".join(["great"] * 30000)
    rows = [f'"{long if i == 3 else "great film" if i % 2 else "awful film"}",{i % 2}' for i in range(40)]
    (tmp_path / "reviews.csv").write_text("sentence,label\n" + "\n".join(rows) + "\n")
    module = TextTSV(path=str(tmp_path / "reviews.csv"))
    module.setup()
    assert len(module.train_split) + len(module.val_split) + len(module.test_split) == 40


def test_the_logged_model_takes_any_number_of_texts_after_an_rnn_run_and_a_one_row_test_split(store, tmp_path):
    """torch.export fixes a batch size the model reads as a number (the RNN's ``len(tokens)``) or that the
    example has as its only size (a test split of one row), with only a warning: the logged model then refused
    every other number of rows. Both runs' models answer 1, 2 and 5 texts as pipeline-predict does."""
    import pandas as pd

    data = write_sentiment_tsv(tmp_path / "data", rows=200, dev=40)
    (data / "dev.tsv").rename(data / "test.tsv")
    one_row = tmp_path / "one" / "test.tsv"
    one_row.parent.mkdir()
    one_row.write_text("\n".join((data / "test.tsv").read_text().splitlines()[:2]) + "\n")
    texts = pd.read_csv(data / "test.tsv", sep="\t")["sentence"]
    for extra in (["model=rnn"], ["model=bow", f"data.test_path={one_row}"]):
        result = run_cli(["task=sentiment", "data=text_tsv", f"data.path={data}", "trainer.max_epochs=1",
                          "logger.mlflow.log_plots=false", *extra], store)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "cannot be exported" not in result.stderr, result.stderr[-2000:]
        run = runs_in(store)[0]
        model = load_pyfunc(store, run.info.run_id)
        answers = {rows: model.predict(pd.DataFrame({"sentence": texts[:rows]})) for rows in (1, 2, 5)}
        assert [len(answer) for answer in answers.values()] == [1, 2, 5], extra
        assert answers[5]["probability_1"][:2].to_numpy() == pytest.approx(answers[2]["probability_1"].to_numpy(),
                                                                          abs=1e-6)
        given = tmp_path / "texts.txt"
        given.write_text("\n".join(texts[:5]) + "\n")
        output = tmp_path / f"predicted_{len(extra)}.csv"
        code, _, err = predict_cli([run.info.run_id, "--input", str(given), "--output", str(output),
                                    "--tracking-uri", store["uri"]])
        assert code == 0, (extra, err[-2000:])
        assert pd.read_csv(output)["prediction"].astype(str).tolist() == answers[5]["prediction"].tolist()


def test_a_table_of_new_texts_with_one_line_not_utf8_is_read_as_training_reads_it(store, tmp_path):
    """Training reads a file that is not all UTF-8 line by line: its UTF-8 lines stay UTF-8, the others are read as
    Windows-1252. pipeline-predict read a CSV of new texts with one such line as Windows-1252 whole, so every accented
    word of its UTF-8 lines became another word ("génial" -> "gÃ©nial", unknown to the vocabulary) and their answers
    changed. Now the UTF-8 rows are answered as the same rows of an all-UTF-8 file are."""
    import pandas as pd

    generator = random.Random(5)
    rows = [{"review": f"{' '.join(generator.sample(FILLER, 3))} {'génial' if i % 2 else 'médiocre'}",
             "sentiment": "pos" if i % 2 else "neg"} for i in range(200)]
    reviews = tmp_path / "reviews.csv"
    pd.DataFrame(rows).to_csv(reviews, index=False)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={reviews}", "data.text_column=review",
                                 "data.label_column=sentiment", "model=nbsvm", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [checkpoint] = (store["outputs"] / "checkpoints").glob("best-*.ckpt")

    new = "id,review\n1,un film génial\n2,un film médiocre\n3,\"génial, génial\"\n"
    utf8, mixed = tmp_path / "new_utf8.csv", tmp_path / "new_mixed.csv"
    utf8.write_text(new, encoding="utf-8")
    mixed.write_bytes(new.encode("utf-8") + "4,un café\n".encode("cp1252"))
    answers = {}
    for source in (utf8, mixed):
        output = tmp_path / f"predicted_{source.stem}.csv"
        code, _, stderr = predict_cli([str(checkpoint), "--input", str(source), "--output", str(output),
                                       "--keep", "id"])
        assert code == 0, stderr[-2000:]
        answers[source] = pd.read_csv(output)
    assert answers[utf8]["prediction"].tolist() == ["pos", "neg", "pos"]
    assert answers[mixed][:3].equals(answers[utf8]), answers[mixed]
    assert len(answers[mixed]) == 4
    # said as for a .txt file: which lines were read otherwise, and that training reads them so
    assert f"Note: {mixed} is not UTF-8 (byte " in stderr and "were read as Windows-1252" in stderr, stderr
    # a UTF-8 sequence cut off at the very end of the file (a truncated copy) is found too
    cut = tmp_path / "cut.csv"
    cut.write_bytes(new.encode("utf-8") + "4,un café".encode("utf-8")[:-1])
    code, _, stderr = predict_cli([str(checkpoint), "--input", str(cut), "--output", str(tmp_path / "cut_out.csv"),
                                   "--keep", "id"])
    assert code == 0 and f"Note: {cut} is not UTF-8 (byte {len(new.encode()) + 8} is 0xc3)" in stderr, stderr
    assert pd.read_csv(tmp_path / "cut_out.csv")[:3].equals(answers[utf8])


def test_a_tokenizer_without_a_pad_token_is_refused_rather_than_padding_with_its_unknown_token(store, tmp_path):
    """A tokenizer saved without a pad (or end-of-sequence) token padded batches with its [UNK] id: every word it
    does not know was then read as padding, left out of the attention and of the model's reading, with exit 0. Now
    refused before any run, naming the token to set."""
    from transformers import PreTrainedTokenizerFast

    folder = write_tiny_bert(tmp_path / "tiny-bert")
    kept = PreTrainedTokenizerFast.from_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    PreTrainedTokenizerFast(tokenizer_object=kept.backend_tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", model_max_length=128).save_pretrained(folder)
    data = write_sentiment_tsv(tmp_path / "data", rows=60, dev=20)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=transformer",
                                 f"model.name={folder}", "data.max_length=16", "trainer.max_epochs=1"], store)
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr) == (
        f"Error: data.tokenizer={folder} has no pad token (nor an end-of-sequence one) to pad batches with, and its "
        "unknown token [UNK] would pad them: every word it does not know would be read as padding and left out; set "
        "one and save the tokenizer again (tokenizer.pad_token = '[PAD]'; tokenizer.save_pretrained(folder))"), \
        result.stderr[-2000:]
    assert runs_in(store) == []


def test_a_large_max_length_does_not_hold_every_text_padded_by_the_tokenizer(tmp_path):
    """In memory, the tokenizer padded every text to data.max_length before the ids were copied into their array:
    each encoding then held max_length tokens with offsets and masks (data.max_length=100000 on 1,206 short texts:
    9.7 GB and 50 s before the first epoch; 2.6 GB and 15 s now, the same metrics). The ids are the same."""
    import subprocess
    import sys

    rows = [f"{'a great film' if i % 2 else 'a dull film'} number {i},{i % 2}" for i in range(100)]
    (tmp_path / "reviews.csv").write_text("sentence,label\n" + "\n".join(rows) + "\n")
    script = (
        "import resource, sys\n"
        "from pipeline.data.text import TextTSV\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
        f"module = TextTSV(path={str(tmp_path / 'reviews.csv')!r}, max_length=300000)\n"
        "module.setup()\n"
        "x = module.train_split.x\n"
        "assert x.shape[1] == 300000 and int(x[0, 3]) != 0 and int(x[:, 5:].abs().sum()) == 0, x[:, :8]\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported_mib, peak_mib = (int(line) for line in done.stdout.splitlines() if line.isdigit())
    # the ids: 100 x 300,000 int64s, 229 MiB; the padded encodings took 2.4 GiB more
    assert peak_mib - imported_mib < 700, (imported_mib, peak_mib)


def test_a_pretrained_folder_of_a_model_without_a_text_classification_head_is_refused_as_such(store, tmp_path):
    """A folder written by save_pretrained for a model transformers has no sequence-classification head for (a ViT
    beside a tokenizer) was refused as "the folder cannot be loaded ...; it needs config.json, the weights and the
    tokenizer files written by save_pretrained", which it holds. Now the line names the model type and what to
    choose instead; exit 2, no run."""
    from transformers import PreTrainedTokenizerFast, ViTConfig, ViTModel

    bert = write_tiny_bert(tmp_path / "tiny-bert")
    folder = tmp_path / "tiny-vit"
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8)).save_pretrained(folder)
    PreTrainedTokenizerFast.from_pretrained(str(bert)).save_pretrained(folder)
    data = write_sentiment_tsv(tmp_path / "data", rows=60, dev=20)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", "model=transformer",
                                 f"model.name={folder}", "data.max_length=16", "trainer.max_epochs=1"], store)
    assert result.returncode == 2, result.stderr[-3000:]
    line = error_line(result.stderr)
    assert line.startswith(f"Error: model.name={folder} is a vit model, which transformers has no "
                           "sequence-classification head for (AutoModelForSequenceClassification takes "), line
    assert "bert" in line and "save_pretrained" not in line, line
    assert runs_in(store) == []


def test_a_model_folder_given_relative_is_logged_absolute_and_the_run_is_evaluated_from_elsewhere(store, tmp_path,
                                                                                                  monkeypatch):
    """model.name=tiny-bert (a folder beside the command) was logged as written, while data.path is logged absolute:
    pipeline-eval and pipeline-rerun of the run from another folder then looked for a Hugging Face model 'tiny-bert'
    and said to download it ('not in the Hugging Face cache ... hf download tiny-bert'). Now the folder is logged
    absolute (model.name, and data.tokenizer with it), and the evaluation runs from anywhere."""
    write_tiny_bert(tmp_path / "tiny-bert")
    data = write_sentiment_tsv(tmp_path / "data", rows=60, dev=20)
    monkeypatch.chdir(tmp_path)
    result = run_cli_in_process(["task=sentiment", "data=text_tsv", "data.path=data", "model=transformer",
                                 "model.name=tiny-bert", "data.max_length=16", "trainer.max_epochs=1",
                                 "logger.mlflow.log_plots=false", "logger.mlflow.log_model=false"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.data.params["model.name"] == str(tmp_path / "tiny-bert")
    assert run.data.params["data.tokenizer"] == str(tmp_path / "tiny-bert")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, stdout, stderr = eval_cli([run.info.run_id, "--tracking-uri", store["uri"], "--output-dir",
                                     str(tmp_path / "evaluation")])
    assert code == 0, stderr[-3000:]
    assert "test/acc=" in stdout
    assert str(data) == run.data.params["data.path"]


def test_a_file_named_as_the_tokenizer_or_model_is_refused_as_a_file_naming_its_folder(store, tmp_path):
    """data.tokenizer=<folder>/tokenizer.json (what the tokenizers library saves) or model.name=<the weights file> was
    refused as "no such folder", though the file is there. Now the line says it is a file and names its folder."""
    folder = write_tiny_bert(tmp_path / "tiny-bert")
    data = write_sentiment_tsv(tmp_path / "data", rows=60, dev=20)
    for key, extra in (("data.tokenizer", ["model=bow"]), ("model.name", ["model=transformer"])):
        named = folder / ("tokenizer.json" if key == "data.tokenizer" else "model.safetensors")
        result = run_cli_in_process(["task=sentiment", "data=text_tsv", f"data.path={data}", *extra,
                                     f"{key}={named}", "trainer.max_epochs=1"], store)
        assert result.returncode == 2, result.stderr[-3000:]
        assert error_line(result.stderr) == (
            f"Error: {key}={named}: a file, not a folder; name the folder that holds it ({key}={folder}): a model or "
            "tokenizer folder is one written by save_pretrained"), result.stderr[-2000:]
    assert runs_in(store) == []


def test_a_model_that_does_not_read_texts_is_refused_naming_the_models_that_do(store, tmp_path):
    """task=classification with data=text_tsv (the researcher's texts, the generic classification task) picks the
    task's default model=mlp, and the refusal said only "model=mlp takes image/tabular inputs but data=text_tsv is
    text data", a model the command never named. Now it names the models that read texts."""
    data = write_sentiment_tsv(tmp_path / "data", rows=60, dev=20)
    result = run_cli_in_process(["task=classification", "data=text_tsv", f"data.path={data}",
                                 "trainer.max_epochs=1"], store)
    assert result.returncode == 2, result.stderr[-3000:]
    assert error_line(result.stderr) == (
        "Error: model=mlp takes image/tabular inputs but data=text_tsv is text data; the models for text data: "
        "model=bow, nbsvm, rnn, textcnn, transformer"), result.stderr[-2000:]
    assert runs_in(store) == []
