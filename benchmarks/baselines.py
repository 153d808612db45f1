"""What users would otherwise hand-write, on tffm's own features and split.

Used by `real_data.py`. Both baselines read exactly the rows and encoded
features a tffm model reads: the training rows without the holdout (every
`holdout_every`-th line) to fit, the holdout to choose epochs and
hyperparameters, the test file only to report.

- `torch_fm`: a factorization machine written in PyTorch as a user would
  (one embedding table with per-field offsets, lists pooled by their
  `combiner`, numerics as value x vector, `0.5 * ((sum v)^2 - sum v^2)`,
  Adam, L2 on the rows a batch reads, early stopping on the holdout), with
  a small grid of learning rate and L2 chosen on the holdout.
- `lightgbm`: gradient-boosted trees over the same ids (categorical
  features), numeric values and lists (one count column per id), early
  stopping on the holdout, a small grid of leaves chosen on the holdout.
  Skipped when lightgbm is not installed.
"""

import dataclasses
import importlib.util
import itertools

import numpy as np

from tffm.features import NUMERIC_BOUND
from tffm.features import Categorical
from tffm.features import MultiCategorical
from tffm.features import Numeric
from tffm.metrics import log_loss
from tffm.metrics import mae
from tffm.metrics import rmse
from tffm.metrics import roc_auc

# Rows per batch read (the arrays are concatenated: no effect on results).
READ_BATCH = 1024


@dataclasses.dataclass
class Arrays:
    """Encoded rows: `{feature: array}` and labels."""

    x: dict
    y: np.ndarray


def encoded_arrays(layout, features, files, holdout):
    """Reads `files` as tffm does (by `layout`) and encodes them: `Arrays`."""
    from tffm.data import open_source
    from tffm.encoder import FeatureEncoder

    source = open_source(layout, files, batch_size=READ_BATCH, holdout=holdout)
    dataset = FeatureEncoder(features).map_dataset(source.dataset)
    parts, labels = [], []
    for x, y in dataset:
        parts.append({k: np.asarray(v) for k, v in x.items()})
        labels.append(np.asarray(y).reshape(-1))
    x = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return Arrays(x, np.concatenate(labels).astype("float32"))


def standardized(feature, values):
    """The value a tffm model uses for a `Numeric` (see `tffm.Numeric`)."""
    x = np.asarray(values, np.float64)
    if feature.transform == "log1p":
        x = np.log1p(np.maximum(x, 0.0))
    x = (x - feature.mean) / feature.std
    x = np.clip(x, -NUMERIC_BOUND, NUMERIC_BOUND)
    return np.where(np.isnan(x), 0.0, x).astype("float32")


def score(task, y, p):
    if task == "binary":
        return {"auc": roc_auc(y, p), "logloss": log_loss(y, p)}
    return {"rmse": rmse(y, p), "mae": mae(y, p)}


def better(task, a, b):
    """Whether holdout score `a` beats `b` (AUC up, RMSE down)."""
    if b is None:
        return True
    return a["auc"] > b["auc"] if task == "binary" else a["rmse"] < b["rmse"]


# ---------------------------------------------------------------- torch FM


def torch_available():
    return importlib.util.find_spec("torch") is not None


def torch_fm(features, task, train, holdout, test, *, seed=0):
    """Grid over (lr, l2) on the holdout; returns (test metrics, choice)."""
    best = None
    for lr, l2 in itertools.product((3e-3, 1e-2), (0.01, 0.03, 0.1)):
        model, valid = _fit_torch_fm(
            features, task, train, holdout, lr=lr, l2=l2, seed=seed
        )
        if better(task, valid, best and best[1]):
            best = (model, valid, {"lr": lr, "l2": l2})
    model, _, choice = best
    return score(task, test.y, _predict(model, features, test, task)), choice


def _fit_torch_fm(features, task, train, holdout, *, lr, l2, seed):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    rng = np.random.default_rng(seed)
    model = _TorchFM(features, embedding_dim=10, task=task)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = (
        torch.nn.BCEWithLogitsLoss() if task == "binary" else torch.nn.MSELoss()
    )
    inputs = model.tensors(train)
    y = torch.from_numpy(train.y)
    best, best_state, wait = None, None, 0
    for _ in range(40):
        order = torch.from_numpy(rng.permutation(len(train.y)))
        model.train()
        for begin in range(0, len(order), 512):
            rows = order[begin : begin + 512]
            logit, penalty = model({k: v[rows] for k, v in inputs.items()})
            loss = loss_fn(logit, y[rows]) + l2 * penalty
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        valid = score(task, holdout.y, _predict(model, features, holdout, task))
        if better(task, valid, best):
            best, wait = valid, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            wait += 1
            if wait >= 5:
                break
    model.load_state_dict(best_state)
    return model, best


def _predict(model, features, arrays, task):
    import torch

    model.eval()
    with torch.no_grad():
        logit, _ = model(model.tensors(arrays))
    out = logit.numpy().astype(np.float64)
    return 1 / (1 + np.exp(-out)) if task == "binary" else out


class _TorchFM:
    """Built lazily so that importing this module needs no torch."""

    def __new__(cls, features, *, embedding_dim, task):
        import torch
        from torch import nn

        class TorchFM(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = list(features)
                offsets, total = {}, 0
                for f in self.features:
                    offsets[f.name] = total
                    total += f.num_ids
                self.offsets = offsets
                self.v = nn.Embedding(total, embedding_dim)
                self.w = nn.Embedding(total, 1)
                nn.init.normal_(self.v.weight, std=0.01)
                nn.init.zeros_(self.w.weight)
                self.bias = nn.Parameter(torch.zeros(1))

            def tensors(self, arrays):
                out = {}
                for f in self.features:
                    x = arrays.x[f.name]
                    if isinstance(f, Numeric):
                        out[f.name] = torch.from_numpy(standardized(f, x))
                    else:
                        out[f.name] = torch.from_numpy(x.astype("int64"))
                return out

            def forward(self, inputs):
                vectors, linear, penalty = [], [], 0.0
                for f in self.features:
                    x, offset = inputs[f.name], self.offsets[f.name]
                    if isinstance(f, Numeric):
                        row = torch.tensor([offset])
                        vectors.append(x[:, None] * self.v(row))  # (B, D)
                        linear.append(x * self.w(row)[0, 0])  # (B,)
                        continue
                    if isinstance(f, MultiCategorical):
                        mask = (x > 0).float()  # 0 = padding
                        v = self.v(x + offset) * mask[..., None]  # (B, L, D)
                        w = self.w(x + offset)[..., 0] * mask  # (B, L)
                        count = mask.sum(1).clamp(min=1)  # (B,)
                        if f.combiner == "mean":
                            v, w = v.sum(1) / count[:, None], w.sum(1) / count
                        else:
                            v, w = v.sum(1), w.sum(1)
                    else:
                        assert isinstance(f, Categorical)
                        v = self.v(x + offset)  # (B, D)
                        w = self.w(x + offset)[:, 0]  # (B,)
                    vectors.append(v)
                    linear.append(w)
                    penalty = penalty + v.square().sum(1) + w.square()
                v = torch.stack(vectors, 1)  # (B, F, D)
                fm = 0.5 * (v.sum(1).square() - v.square().sum(1)).sum(1)
                logit = self.bias + torch.stack(linear, 1).sum(1) + fm
                return logit, torch.as_tensor(penalty).mean()

        return TorchFM()


# ---------------------------------------------------------------- LightGBM


def lightgbm_available():
    return importlib.util.find_spec("lightgbm") is not None


# A list column becomes one count column per id (MovieLens' genres: 20).
MAX_COUNT_COLUMNS = 1024


def lightgbm(features, task, train, holdout, test, *, seed=0):
    """Grid over leaves on the holdout; returns (test metrics, choice)."""
    import lightgbm as lgb

    def table(arrays):
        columns, categorical = [], []
        for f in features:
            x = arrays.x[f.name]
            if isinstance(f, MultiCategorical):  # bag of ids, as counts
                if f.num_ids > MAX_COUNT_COLUMNS:
                    raise ValueError(
                        f"Feature {f.name!r}: {f.num_ids} ids are too many "
                        f"count columns for LightGBM (at most "
                        f"{MAX_COUNT_COLUMNS})."
                    )
                counts = np.zeros((len(x), f.num_ids))
                rows = np.broadcast_to(np.arange(len(x))[:, None], x.shape)
                np.add.at(counts, (rows, x), 1.0)
                for column in counts[:, 1:].T:  # id 0 is the padding
                    categorical.append(False)
                    columns.append(column)
                continue
            categorical.append(not isinstance(f, Numeric))
            columns.append(np.asarray(x, np.float64))
        return np.stack(columns, 1), [i for i, c in enumerate(categorical) if c]

    x_train, categorical = table(train)
    x_valid, _ = table(holdout)
    x_test, _ = table(test)
    best = None
    for leaves in (15, 63):
        model = lgb.LGBMClassifier if task == "binary" else lgb.LGBMRegressor
        model = model(
            n_estimators=2000,
            learning_rate=0.05,
            num_leaves=leaves,
            min_child_samples=20,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.8,
            random_state=seed,
            verbose=-1,
            n_jobs=2,
        )
        model.fit(
            x_train,
            train.y,
            eval_set=[(x_valid, holdout.y)],
            categorical_feature=categorical,
            callbacks=[lgb.early_stopping(50, verbose=False)],
        )
        p = _lgb_predict(model, x_valid, task)
        valid = score(task, holdout.y, p)
        if better(task, valid, best and best[1]):
            best = (model, valid, {"num_leaves": leaves})
    model, _, choice = best
    choice["trees"] = int(model.best_iteration_)
    return score(task, test.y, _lgb_predict(model, x_test, task)), choice


def _lgb_predict(model, x, task):
    if task == "binary":
        return model.predict_proba(x)[:, 1]
    return model.predict(x)
