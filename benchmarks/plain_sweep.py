"""A hand-written Optuna + PyTorch sweep: the yardstick of ``benchmarks/sweep.py --vs-plain``.

What a researcher writes without the pipeline: load the table, split and standardise it, then an
Optuna objective with the search space of ``hparams_search=classification_optuna`` (optimizer
sgd/adam/rmsprop, log lr, log weight decay, momentum for SGD only, dropout, log L1, label smoothing),
the default MLP (64-64, ReLU), batch 64, 20 epochs, the objective (the best validation cross-entropy so far)
reported every epoch, as the pipeline's pruning callback reports it,
TPE (multivariate, grouped, constant liar) and Hyperband (min_resource=1) as the pipeline sets them
up, the same optimizer settings (fused Adam), Optuna's in-memory storage; no tracking, no
checkpoints, no test pass. Prints the best trial.

    python benchmarks/plain_sweep.py --trials 20 --data breast_cancer
    PIPELINE_DATA_DIR=../shared/data python benchmarks/plain_sweep.py --trials 20 --data adult
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import optuna
import torch
from torch import nn
from torch.nn import functional as F


def load_breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer as load

    bunch = load()
    return bunch.data.astype(np.float32), bunch.target.astype(np.int64)


def load_adult(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """UCI Adult as distributed (header row, ``, `` separated, ``?`` missing): numeric columns as they are,
    string columns one-hot encoded (missing is a category of its own); the official test rows are not needed
    (the sweep selects by validation)."""
    import pandas as pd

    table = pd.read_csv(os.path.join(data_dir, "adult", "adult.data"), sep=r",\s*", engine="python",
                        na_values="?", skipinitialspace=True)
    target = table.pop(table.columns[-1]).astype(str).str.rstrip(".")
    features = pd.get_dummies(table, dummy_na=True, dtype=np.float32)
    return features.to_numpy(np.float32), (target == ">50K").to_numpy(np.int64)


def split(x: np.ndarray, y: np.ndarray, seed: int):
    """Stratified hold-outs as the pipeline makes them: 20 % test, then 10 % of the rest for validation;
    features standardised with the training rows' statistics."""
    from sklearn.model_selection import train_test_split

    x_rest, _, y_rest, _ = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    x_train, x_val, y_train, y_val = train_test_split(x_rest, y_rest, test_size=0.1, stratify=y_rest,
                                                      random_state=seed)
    mean, std = x_train.mean(0), x_train.std(0).clip(1e-8)
    as_tensors = lambda a, b: (torch.from_numpy((a - mean) / std), torch.from_numpy(b).float())  # noqa: E731
    return as_tensors(x_train, y_train), as_tensors(x_val, y_val)


def mlp(inputs: int, dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    for width in (64, 64):
        layers += [nn.Linear(inputs, width), nn.ReLU()] + ([nn.Dropout(dropout)] if dropout > 0 else [])
        inputs = width
    return nn.Sequential(*layers, nn.Linear(inputs, 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", default="breast_cancer", choices=["breast_cancer", "adult"])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.perf_counter()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(args.seed)

    if args.data == "adult":
        x, y = load_adult(os.environ.get("PIPELINE_DATA_DIR", "data"))
    else:
        x, y = load_breast_cancer()
    (x_train, y_train), (x_val, y_val) = split(x, y, args.seed)
    batch_size = 64

    def objective(trial: optuna.Trial) -> float:
        name = trial.suggest_categorical("optimizer", ["sgd", "adam", "rmsprop"])
        lr = trial.suggest_float("optimizer.lr", 1e-4, 1e-1, log=True)
        weight_decay = trial.suggest_float("optimizer.weight_decay", 1e-6, 1e-2, log=True)
        momentum = trial.suggest_float("optimizer.momentum", 0.0, 0.95) if name == "sgd" else 0.0
        dropout = trial.suggest_float("model.dropout", 0.0, 0.5)
        l1 = trial.suggest_float("model.l1", 1e-7, 1e-3, log=True)
        smoothing = trial.suggest_float("task.label_smoothing", 0.0, 0.2)

        model = mlp(x_train.shape[1], dropout)
        if name == "sgd":
            optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        elif name == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
        else:
            optimizer = torch.optim.RMSprop(model.parameters(), lr=lr, weight_decay=weight_decay)
        best = float("inf")
        for epoch in range(args.epochs):
            model.train()
            order = torch.randperm(len(y_train))
            for start in range(0, len(order), batch_size):
                index = order[start:start + batch_size]
                target = y_train[index] * (1 - smoothing) + 0.5 * smoothing
                loss = F.binary_cross_entropy_with_logits(model(x_train[index]).squeeze(-1), target)
                loss = loss + l1 * sum(p.abs().sum() for p in model.parameters() if p.dim() > 1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                val_loss = F.binary_cross_entropy_with_logits(model(x_val).squeeze(-1), y_val).item()
            best = min(best, val_loss)
            trial.report(best, epoch + 1)  # the objective as it stands, as the pipeline reports val/loss_best
            if trial.should_prune():
                raise optuna.TrialPruned()
        return best

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=args.seed, multivariate=True, group=True, constant_liar=True)
        study = optuna.create_study(direction="minimize", sampler=sampler,
                                    pruner=optuna.pruners.HyperbandPruner(min_resource=1))
        study.optimize(objective, n_trials=args.trials)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    print(f"{len(study.trials)} trials ({pruned} pruned) in {time.perf_counter() - started:.1f} s after start-up; "
          f"best val/loss {study.best_value:.4f}: {study.best_params}")


if __name__ == "__main__":
    main()
