#!/usr/bin/env bash
# GPU smoke check: a short bf16-mixed run of each task on one GPU (and on all GPUs with DDP when
# there are several), and a pretrained-backbone fine-tuning run on image files (resnet50, 224 px,
# channels-last), printing training throughput. Run it whenever a GPU machine is at hand:
#
#   scripts/gpu_check.sh                  # 2 epochs per task
#   EPOCHS=5 scripts/gpu_check.sh         # longer runs, steadier numbers
#   scripts/gpu_check.sh data.limit_rows=2000   # extra overrides go to every run
#   FINETUNE_WORKERS=16 scripts/gpu_check.sh  # DataLoader workers of the fine-tuning run (default 8)
#
# samples/s is train/samples_per_s of the last epoch (training rows over the training part of the
# epoch, summed over ranks); the first epoch includes CUDA start-up and is not shown.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
EPOCHS=${EPOCHS:-2}
TASKS=(regression classification image_classification sentiment)
gpus=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)')
if [ "$gpus" -eq 0 ]; then
  echo "gpu_check: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False); run this on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
  exit 1
fi
"$PYTHON" -c 'import torch; print(f"gpu_check: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")'
OUT=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")

# one run: name, then overrides; prints a result line and records a failure
failures=0
run() {
  local name=$1; shift
  local dir="$OUT/$name"
  if "$PYTHON" -m pipeline.cli.train "$@" trainer.precision=bf16-mixed trainer.max_epochs="$EPOCHS" logger=none \
       trainer.enable_progress_bar=false "hydra.run.dir=$dir" "${EXTRA[@]}" >"$OUT/$name.log" 2>&1; then
    "$PYTHON" - "$dir/metrics.jsonl" "$name" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
train = [r for r in rows if "train/samples_per_s" in r][-1]
test = {k: v for r in rows for k, v in r.items() if k.startswith("test/")}
shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted(test.items()) if k in ("test/acc", "test/rmse"))
print(f"{sys.argv[2]:<28} {train['train/samples_per_s']:>12,.0f} samples/s  "
      f"epoch {train['train/epoch_time_s']:.2f} s  {shown}")
PY
  else
    failures=$((failures + 1))
    printf '%-28s FAILED: %s (log: %s)\n' "$name" "$(grep -E '^Error' "$OUT/$name.log" | tail -1 || true)" "$OUT/$name.log"
  fi
}

EXTRA=("$@")
printf '%-28s %22s\n' "run" "throughput"
for task in "${TASKS[@]}"; do
  run "$task-gpu" "task=$task" trainer=gpu
done
# Transformer fine-tuning (experiment=finetune_transformer: AdamW, warm-up + linear decay, batches padded to
# their longest text, bf16). TRANSFORMER=<Hugging Face id in the cache, or a local folder> picks the model;
# unset, a randomly initialised BERT-base-sized model and an SST-2-like corpus are written here (GPU machines
# are often offline): its samples/s is a speed, its accuracy means nothing.
TEXT_DIR="$OUT/random-transformer"
if [ -n "${TRANSFORMER:-}" ]; then
  transformer_model=$TRANSFORMER
  transformer_data=(data=text_tsv "data.path=${TRANSFORMER_DATA:?set TRANSFORMER_DATA to a GLUE-style folder (train.tsv, dev.tsv)}")
else
  "$PYTHON" scripts/random_transformer.py "$TEXT_DIR" --size base --rows 20000 >"$OUT/random-transformer.log" 2>&1
  transformer_model="$TEXT_DIR/model"
  transformer_data=(data=text_tsv "data.path=$TEXT_DIR/data")
fi
run "transformer-finetune-gpu" experiment=finetune_transformer "model.name=$transformer_model" "${transformer_data[@]}" \
  trainer=gpu data.num_workers=4
# Fine-tuning a pretrained backbone on image files: resnet50 at 224 px, images decoded and augmented
# in DataLoader workers (RandomResizedCrop + flip), bf16 autocast, channels-last. GPU machines are often
# offline: the images are synthetic JPEGs and random weights are saved where torchvision caches resnet50's
# ImageNet weights, so the real loading path runs (the throughput does not depend on the weights' values).
IMAGES="$OUT/images"
FINETUNE_TORCH_HOME="$OUT/torch"
"$PYTHON" - "$IMAGES" "$FINETUNE_TORCH_HOME" <<'PY'
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image

images, torch_home = Path(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(0)
for split, per_class in (("train", 256), ("val", 32)):
    for label in range(10):
        folder = images / split / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (256 + 8 * (i % 8), 320, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}.jpg", quality=90)
weights = torchvision.models.ResNet50_Weights.DEFAULT
cached = torch_home / "hub" / "checkpoints" / Path(weights.url).name
cached.parent.mkdir(parents=True, exist_ok=True)
torch.save(torchvision.models.resnet50().state_dict(), cached)
PY
export TORCH_HOME="$FINETUNE_TORCH_HOME"
run "finetune-resnet50-gpu" task=image_classification data=image_folder "data.path=$IMAGES" data.image_size=224 \
  data.batch_size=128 data.num_workers="${FINETUNE_WORKERS:-8}" model=torchvision model.name=resnet50 \
  model.weights=DEFAULT model.download=false model.channels_last=true model.backbone_lr_scale=0.1 \
  optimizer=adamw trainer=gpu
unset TORCH_HOME

if [ "$gpus" -gt 1 ]; then
  for task in image_classification sentiment; do
    run "$task-ddp-${gpus}gpu" "task=$task" trainer=ddp
  done
fi
echo "outputs and logs: $OUT"
exit $((failures > 0))
