"""A hand-written training script: the yardstick of ``make train`` (``benchmarks/overhead.py --vs-plain-train``).

The job of the default ``pipeline-train`` run, written by hand: load breast_cancer, hold out 20 % for
testing and 10 % of the rest for validation (stratified), standardise with the training rows' statistics,
train the default MLP (64-64, ReLU) with fused Adam (lr 1e-3, batch 64) for the default 50 epochs (the tabular
tasks' ``trainer.max_epochs``), compute the validation loss after each epoch and keep the weights of the best
one in memory, test those, print the test accuracy. No tracking, no checkpoint files, no plots.
``--epochs 10`` is the job ``make train`` had when the speed issue was written (10 epochs).

    python benchmarks/plain_train.py [--epochs N]
"""
import argparse
import copy

import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--epochs", type=int, default=50)
epochs = parser.parse_args().epochs

torch.manual_seed(42)
data = load_breast_cancer()
x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.2, stratify=data.target,
                                                    random_state=42)
x_train, x_val, y_train, y_val = train_test_split(x_train, y_train, test_size=0.1, stratify=y_train, random_state=42)
mean, std = x_train.mean(0), x_train.std(0)
x_train, x_val, x_test = (torch.tensor((x - mean) / std, dtype=torch.float32) for x in (x_train, x_val, x_test))
y_train, y_val, y_test = (torch.tensor(y, dtype=torch.float32) for y in (y_train, y_val, y_test))

model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
best_loss, best_state = float("inf"), None
for epoch in range(epochs):
    model.train()
    order = torch.randperm(len(y_train))
    for start in range(0, len(order), 64):
        index = order[start:start + 64]
        loss = F.binary_cross_entropy_with_logits(model(x_train[index]).squeeze(-1), y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        val_loss = F.binary_cross_entropy_with_logits(model(x_val).squeeze(-1), y_val).item()
    if val_loss < best_loss:
        best_loss, best_state = val_loss, copy.deepcopy(model.state_dict())
    print(f"epoch {epoch + 1}/{epochs}  train/loss {loss.item():.4f}  val/loss {val_loss:.4f}")

model.load_state_dict(best_state)
model.eval()
with torch.no_grad():
    accuracy = ((model(x_test).squeeze(-1) > 0) == y_test.bool()).float().mean().item()
print(f"test/acc={accuracy:.4f}")
