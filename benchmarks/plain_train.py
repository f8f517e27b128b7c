"""A hand-written training script: the yardstick of ``make train`` (``benchmarks/overhead.py --vs-plain-train``).

The job of the default ``pipeline-train`` run, written by hand: load breast_cancer, hold out 20 % for
testing (stratified) and standardise with the training rows' statistics, train the default MLP (64-64,
ReLU) with fused Adam (lr 1e-3, batch 64) for 10 epochs, test, print the test accuracy. No validation
split, no tracking, no checkpoints, no plots.

    python benchmarks/plain_train.py
"""
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn
from torch.nn import functional as F

torch.manual_seed(42)
data = load_breast_cancer()
x_train, x_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.2, stratify=data.target,
                                                    random_state=42)
mean, std = x_train.mean(0), x_train.std(0)
x_train, x_test = (torch.tensor((x - mean) / std, dtype=torch.float32) for x in (x_train, x_test))
y_train, y_test = torch.tensor(y_train, dtype=torch.float32), torch.tensor(y_test, dtype=torch.float32)

model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
for epoch in range(10):
    model.train()
    order = torch.randperm(len(y_train))
    for start in range(0, len(order), 64):
        index = order[start:start + 64]
        loss = F.binary_cross_entropy_with_logits(model(x_train[index]).squeeze(-1), y_train[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    print(f"epoch {epoch + 1}/10  train/loss {loss.item():.4f}")

model.eval()
with torch.no_grad():
    accuracy = ((model(x_test).squeeze(-1) > 0) == y_test.bool()).float().mean().item()
print(f"test/acc={accuracy:.4f}")
