"""Write a randomly initialised BERT (and a WordPiece tokenizer over a generated vocabulary) with
``save_pretrained``, and a generated sentiment corpus in GLUE layout, for throughput checks on
machines that cannot download a pretrained model. The numbers it gives are speeds, not accuracies.

    .venv/bin/python scripts/random_transformer.py OUT_DIR [--size base|tiny] [--rows 20000]

writes OUT_DIR/model (config.json, model.safetensors, tokenizer files) and OUT_DIR/data/train.tsv,
dev.tsv; then: pipeline-train experiment=finetune_transformer model.name=OUT_DIR/model
data=text_tsv data.path=OUT_DIR/data
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

SIZES = {  # BERT-base (Devlin et al. 2019) and a tiny one for quick checks
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=list(SIZES), default="base")
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--vocab", type=int, default=30000)
    args = parser.parse_args(argv)

    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(args.vocab - 5)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tokenizer = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    model_dir = args.out / "model"
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                            sep_token="[SEP]", mask_token="[MASK]", model_max_length=512).save_pretrained(model_dir)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), max_position_embeddings=512, **SIZES[args.size])
    BertForSequenceClassification(config).save_pretrained(model_dir)

    generator = random.Random(0)
    data_dir = args.out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", args.rows), ("dev", max(100, args.rows // 10))):
        lines = ["sentence\tlabel"]
        for i in range(rows):  # SST-2-like lengths: 5-40 words
            text = " ".join(generator.choice(words) for _ in range(generator.randint(5, 40)))
            lines.append(f"{text}\t{i % 2}")
        (data_dir / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"model: {model_dir}\ndata: {data_dir}")


if __name__ == "__main__":
    main()
