"""``optimizer=lbfgs``: full-batch L-BFGS that fits convex models to convergence. It finds the closed-form
answers (ridge regression with its weight decay, ordinary least squares through the real CLI on the run's own
rows), NBSVM fitted with it is scikit-learn's logistic regression on the same features, and a run counts each
training row once per epoch although L-BFGS evaluates the batch many times."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose, run_cli, runs_in

from pipeline.optimizers import LBFGS

FULL_BATCH = ["optimizer=lbfgs", "data.batch_size=100000"]


@pytest.mark.unit
def test_weight_decay_is_the_l2_penalty_lbfgs_minimises():
    """min_theta mean((X w + b - y)^2) + wd / 2 * (|w|^2 + b^2) has the closed form
    (2/n A'A + wd I) theta = 2/n A'y, A = [X, 1]: L-BFGS lands on it."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=generator, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64) + 0.3 \
        + 0.5 * torch.randn(200, generator=generator, dtype=torch.float64)
    wd = 0.5
    layer = torch.nn.Linear(5, 1).double()
    optimizer = LBFGS(layer.parameters(), max_iter=100, line_search_fn="strong_wolfe", weight_decay=wd,
                      tolerance_grad=1e-10, tolerance_change=1e-14)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(layer(x)[:, 0], y)
        loss.backward()
        return loss

    optimizer.step(closure)
    a = torch.cat([x, torch.ones(200, 1, dtype=torch.float64)], dim=1)
    expected = torch.linalg.solve(2 / 200 * a.T @ a + wd * torch.eye(6, dtype=torch.float64), 2 / 200 * a.T @ y)
    fitted = torch.cat([layer.weight[0], layer.bias]).detach()
    assert torch.allclose(fitted, expected, atol=1e-6), (fitted, expected)


def test_linear_regression_with_lbfgs_is_ordinary_least_squares_on_the_runs_rows(store):
    """Through the CLI: three epochs of full-batch L-BFGS without weight decay reach the least-squares fit of the
    run's training rows; its test R^2 is that of numpy's lstsq on the same split, and the run's throughput
    counts each training row once per epoch."""
    args = ["task=regression", "data=synthetic_linear", "data.n_features=3", "data.weight=[2.0,-1.0,0.5]",
            "data.noise=2.0", "model=linear", *FULL_BATCH, "trainer.max_epochs=3"]
    result = run_cli(args, store)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs_in(store)
    assert run.info.status == "FINISHED" and run.data.params["optimizer._target_"] == "pipeline.optimizers.LBFGS"
    assert "batches per epoch" not in result.stdout + result.stderr

    from hydra.utils import instantiate

    data = instantiate(compose(args).data)
    data.setup("fit")
    (xt, yt), (xs, ys) = ((split.x.double().numpy(), split.y.double().numpy().ravel())
                          for split in (data.train_split, data.test_split))
    design = np.column_stack([xt, np.ones(len(xt))])
    solution, *_ = np.linalg.lstsq(design, yt, rcond=None)
    predicted = np.column_stack([xs, np.ones(len(xs))]) @ solution
    r2 = 1 - ((ys - predicted) ** 2).sum() / ((ys - ys.mean()) ** 2).sum()
    assert 0.3 < r2 < 0.9  # noisy enough that a fit short of the optimum would show
    assert run.data.metrics["test/r2"] == pytest.approx(r2, abs=1e-4)

    epochs = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    timed = [e for e in epochs if "train/samples_per_s" in e]
    assert len(timed) == 3
    for epoch in timed:  # one full batch per epoch, however many times L-BFGS evaluated it
        rows_per_epoch = epoch["train/samples_per_s"] * epoch["train/epoch_time_s"]
        assert rows_per_epoch == pytest.approx(len(xt), rel=0.05)


def test_lbfgs_on_mini_batches_is_warned_about(tmp_path):
    result = run_cli(["task=regression", "data=synthetic_linear", "model=linear", "optimizer=lbfgs", "data.batch_size=64",
                      "trainer.max_epochs=1", "logger=none", f"hydra.run.dir={tmp_path / 'run'}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("optimizer=lbfgs with 12 batches per epoch" in result.stdout + result.stderr
            and "set data.batch_size to at least the training rows" in result.stdout + result.stderr)


@pytest.mark.unit
def test_nbsvm_fitted_by_lbfgs_is_logistic_regression_on_its_scaled_features(tmp_path):
    """The docs' claim: NBSVM + optimizer=lbfgs + weight_decay is scikit-learn's LogisticRegression with
    C = 1 / (weight_decay * rows) on the naive-Bayes-scaled binary features (which leaves the intercept
    unpenalised; the only difference, and a small one)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from pipeline.models.nbsvm import NBSVM

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 60, (400, 12), generator=generator)
    tokens[:, 8:] = 0  # padding
    labels = ((tokens[:, :8] < 25).sum(1) + torch.randint(0, 3, (400,), generator=generator) > 4).long()
    model = NBSVM((12,), 1, vocab_size=60, max_n=2, ngram_buckets=97)
    model.set_feature_counts(model.count_features(tokens, labels))
    wd = 0.01
    optimizer = LBFGS(model.parameters(), max_iter=500, line_search_fn="strong_wolfe", weight_decay=wd,
                      tolerance_grad=1e-9, tolerance_change=1e-12)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(tokens)[:, 0], labels.float())
        loss.backward()
        return loss

    optimizer.step(closure)
    ids = model.feature_ids(tokens)
    rows, columns = (ids != model.pad_id).nonzero(as_tuple=True)
    features = sparse.csr_matrix((np.ones(len(rows)), (rows.numpy(), ids[rows, columns].numpy())),
                                 shape=(len(tokens), model.num_features))
    scaled = features @ sparse.diags(model.ratios[:, 0].double().numpy())
    reference = LogisticRegression(C=1 / (wd * len(tokens)), tol=1e-10, max_iter=10_000).fit(scaled, labels.numpy())
    with torch.no_grad():
        ours = model.eval()(tokens)[:, 0].double().numpy()
    theirs = reference.decision_function(scaled)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.999
    assert np.abs(ours - theirs).max() < 0.05 * np.abs(theirs).max()
    assert ((ours > 0) == (theirs > 0)).mean() >= 0.99


def _lbfgs_rank(rank: int, folder: str, average: bool) -> None:
    """One of two processes: a linear model, each rank with its own shard, and the gradient DDP would give every
    rank (the mean over both shards; computed here from both shards, so that the ranks exchange nothing but what
    the optimizer itself sends -- ranks that take different steps must not meet in mismatched collectives)."""
    import torch.distributed as dist

    import pipeline.optimizers

    # a file rendezvous: no port chosen ahead that something else could take meanwhile
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    try:
        shards = []
        for shard in (0, 1):
            generator = torch.Generator().manual_seed(shard)
            x = torch.randn(100, 3, generator=generator, dtype=torch.float64)
            # shards that disagree: the ranks' own losses along a search direction differ a lot
            shards.append((x, x @ torch.tensor([1.0, -1.0, 2.0], dtype=torch.float64) * (1 if shard == 0 else -5)))
        layer = torch.nn.Linear(3, 1).double()
        torch.nn.init.zeros_(layer.weight), torch.nn.init.zeros_(layer.bias)
        optimizer = pipeline.optimizers.LBFGS(layer.parameters(), max_iter=4, line_search_fn="strong_wolfe")
        if not average:
            optimizer._penalised = lambda closure: closure  # what torch.optim.LBFGS alone would do

        def closure():
            optimizer.zero_grad()
            losses = [torch.nn.functional.mse_loss(layer(x)[:, 0], y) for x, y in shards]
            (sum(losses) / 2).backward()  # DDP: the gradients averaged over the ranks
            return losses[rank]  # a training step returns its own shard's loss

        optimizer.step(closure)
        torch.save([p.detach() for p in layer.parameters()], Path(folder) / f"rank{rank}.pt")
        dist.barrier()  # neither rank tears gloo down while the other may still use it
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("average", [True, False], ids=["averaged loss", "each rank's own loss"])
def test_under_ddp_the_ranks_take_the_same_lbfgs_steps(tmp_path, average):
    """With the loss averaged over the ranks (as pipeline.optimizers.LBFGS does under DDP) both replicas end
    identical; deciding on each rank's own loss -- plain torch.optim.LBFGS -- they drift apart, which is what the
    averaging is for."""
    import torch.multiprocessing as mp

    mp.spawn(_lbfgs_rank, args=(str(tmp_path), average), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    same = all(torch.equal(a, b) for a, b in zip(first, second))
    assert same is average, (first, second)


def test_lbfgs_trains_with_a_schedule_stepped_each_epoch(store):
    """The scheduler's probe stepped L-BFGS without the closure it needs: any scheduler with optimizer=lbfgs was
    refused ('LBFGS.step() missing 1 required positional argument: closure'). It trains, and tests, with the
    learning rate the schedule gives each epoch."""
    from conftest import run_cli_in_process

    result = run_cli_in_process(["model=logistic", *FULL_BATCH, "trainer.max_epochs=3", "scheduler=step",
                                 "scheduler.step_size=1", "callbacks=[default,lr_monitor]", "logger=none"], store)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Test metrics: test/acc=" in result.stdout
    rows = [json.loads(line) for line in (store["outputs"] / "metrics.jsonl").read_text().splitlines()]
    rates = [(row["epoch"], row["lr-LBFGS"]) for row in rows if "lr-LBFGS" in row]
    assert rates == [(0, pytest.approx(1.0)), (1, pytest.approx(0.1)), (2, pytest.approx(0.01))]
