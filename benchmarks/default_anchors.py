"""Anchors for the default runs on exactly their rows: scikit-learn models refitted on the training rows of
the pipeline's own splits of breast_cancer and diabetes (the data modules' seed-42 hold-out, and their 5 folds
of ``data.cv_folds=5``), scored on the same test rows as ``pipeline-train`` / ``task=regression``.

    .venv/bin/python benchmarks/default_anchors.py
"""
from __future__ import annotations

import contextlib
import io
import statistics
import warnings

from sklearn.linear_model import LinearRegression, LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.metrics import accuracy_score, r2_score

from pipeline.data.tabular import BreastCancer, Diabetes

warnings.filterwarnings("ignore")


def splits(cls, kind: str, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):
        data = cls(data_dir="data", seed=42, **kwargs)
        data.task_kind = kind
        data.setup("fit")
    return [(s.x.numpy(), s.y.numpy().ravel()) for s in (data.train_split, data.test_split)]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="the same work (it takes seconds); for the smoke tests")
    parser.parse_args()
    print("| data | split | anchor | score |\n|---|---|---|---|")
    (x, y), (xt, yt) = splits(Diabetes, "regression")
    for model in (LinearRegression(), RidgeCV(alphas=[10 ** (k / 4) for k in range(-12, 13)])):
        print(f"| diabetes | seed 42 hold-out | {type(model).__name__} | R² {r2_score(yt, model.fit(x, y).predict(xt)):.3f} |")
    (x, y), (xt, yt) = splits(BreastCancer, "classification")
    for model in (LogisticRegression(max_iter=5000), LogisticRegressionCV(max_iter=5000)):
        print(f"| breast_cancer | seed 42 hold-out | {type(model).__name__} | acc {accuracy_score(yt, model.fit(x, y).predict(xt)):.3f} |")
    r2, acc = [], []
    for fold in range(5):
        (x, y), (xt, yt) = splits(Diabetes, "regression", cv_folds=5, fold=fold)
        r2.append(r2_score(yt, LinearRegression().fit(x, y).predict(xt)))
        (x, y), (xt, yt) = splits(BreastCancer, "classification", cv_folds=5, fold=fold)
        acc.append(accuracy_score(yt, LogisticRegression(max_iter=5000).fit(x, y).predict(xt)))
    print(f"| diabetes | 5 folds | LinearRegression | R² {statistics.mean(r2):.3f} ({' '.join(f'{v:.3f}' for v in r2)}) |")
    print(f"| breast_cancer | 5 folds | LogisticRegression | acc {statistics.mean(acc):.3f} ({' '.join(f'{v:.3f}' for v in acc)}) |")


if __name__ == "__main__":
    main()
