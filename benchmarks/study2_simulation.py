"""The source study's own simulation (Study 2, "one map, many trials"), run with eotrials' corrections.

Data (as in the source study's notebook): C ~ N(0, 1); T ~ Bernoulli(sigmoid(C)); Y = tau T + C + N(0, 1);
X = g(Y) + N(0, sigma_X^2), g a frozen random MLP 1 -> 50 -> 50 -> 50 -> 100 (ReLU, dropout 0.2 left
active, as the source never switches g to eval mode). A predictor f (MLP 100 -> 64 -> 32 -> 32 -> 1,
Adam, full batch, early stopping on a validation split) is trained on a survey population, and LCC
and Tweedie are fitted once on a held-out calibration split of it. For 50 true effects in [-2, 2] a
fresh trial population is drawn; its ATE is estimated by IPTW with the true propensity from the
truth (oracle), from f's predictions (naive) and from the corrected predictions. The figure of
merit is the slope of estimated on true effect (the source study reports naive 0.535, Tweedie
0.995, LCC 1.007). Each seed also records what ``models.debiasing.trust.correction_diagnostics``
predicts from the calibration split alone (the held-out effect slopes and the favoured correction).

The survey describes the world before any trial (``--survey-effect 0``, the default: Y = C + noise).
``--survey-effect 2`` draws it with the trials' treatment at tau = 2 instead, a sensitivity run:
f's mean response m(y) = E[f(X) | Y = y] is flatter for low y than for high y, so the calibration
slope b (a least-squares average of m' over the survey's Y) exceeds the trials' response slope
(m' averaged over trial populations) when the survey is shifted up, and LCC under-corrects.

    python benchmarks/study2_simulation.py                          # 20 seeds, both bandwidth rules and densities
    python benchmarks/study2_simulation.py --survey-effect 2        # the survey drawn with treatment (sensitivity)
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch
from torch import nn

from harness import write_results
from models.debiasing.corrections import LinearCalibrationCorrection, OutOfSupportWarning, TweedieCorrection
from models.debiasing.trust import correction_diagnostics

EFFECTS = np.linspace(-2, 2, 50)


def embedding_network(seed: int) -> nn.Module:
    """g: a frozen random MLP from Y to a 100-dimensional 'image'."""
    torch.manual_seed(seed)
    layers, width = [], 1
    for _ in range(3):
        layers += [nn.Linear(width, 50), nn.ReLU(), nn.Dropout(0.2)]
        width = 50
    return nn.Sequential(*layers, nn.Linear(50, 100)).requires_grad_(False)


def population(g: nn.Module, n: int, tau: float, sigma_x: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    c = rng.standard_normal(n)
    p = 1 / (1 + np.exp(-c))
    t = rng.binomial(1, p)
    y = tau * t + c + rng.standard_normal(n)
    with torch.no_grad():
        x = g(torch.tensor(y, dtype=torch.float32)[:, None]).numpy()
    return {"x": x + sigma_x * rng.standard_normal(x.shape), "y": y, "t": t, "p": p}


def train_predictor(x: np.ndarray, y: np.ndarray, seed: int, patience: int = 200, max_epochs: int = 50_000) -> nn.Module:
    """f: full-batch Adam (lr 1e-3, weight decay 1e-5) with early stopping on a 25% validation split."""
    torch.manual_seed(seed)
    f = nn.Sequential(nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))
    order = np.random.default_rng(seed).permutation(len(y))
    val, train = order[: len(y) // 4], order[len(y) // 4 :]
    xt, yt = torch.tensor(x[train], dtype=torch.float32), torch.tensor(y[train], dtype=torch.float32)
    xv, yv = torch.tensor(x[val], dtype=torch.float32), torch.tensor(y[val], dtype=torch.float32)
    opt = torch.optim.Adam(f.parameters(), lr=1e-3, weight_decay=1e-5)
    best, best_state, best_epoch = np.inf, None, 0
    for epoch in range(max_epochs):
        opt.zero_grad()
        loss = nn.functional.mse_loss(f(xt).squeeze(1), yt)
        loss.backward()
        opt.step()
        with torch.no_grad():
            val_loss = float(nn.functional.mse_loss(f(xv).squeeze(1), yv))
        if val_loss < best:
            best, best_state, best_epoch = val_loss, {k: v.clone() for k, v in f.state_dict().items()}, epoch
        if epoch - best_epoch > patience:
            break
    f.load_state_dict(best_state)
    return f.eval()


def iptw(y: np.ndarray, t: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean(t * y / p - (1 - t) * y / (1 - p)))


def run(seed: int, n_train: int, n_calibration: int, n_trial: int, sigma_x: float, survey_effect: float = 0.0) -> tuple[pd.DataFrame, dict]:
    rng = np.random.default_rng(seed)
    g = embedding_network(seed)
    train = population(g, n_train, survey_effect, sigma_x, rng)
    calib = population(g, n_calibration, survey_effect, sigma_x, rng)
    mean, sd = train["x"].mean(axis=0), train["x"].std(axis=0) + 1e-9
    f = train_predictor((train["x"] - mean) / sd, train["y"], seed)

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return f(torch.tensor((x - mean) / sd, dtype=torch.float32)).squeeze(1).numpy().astype(float)

    pred_calib = predict(calib["x"])
    lcc = LinearCalibrationCorrection().fit(pred_calib, calib["y"])
    tweedies = {rule: TweedieCorrection(bandwidth=rule).fit(pred_calib, calib["y"]) for rule in ("scott", "silverman_derivative")}
    rows, outside = [], []
    for tau in EFFECTS:
        trial = population(g, n_trial, float(tau), sigma_x, rng)
        pred = predict(trial["x"])
        outside.append(float(np.mean((pred < pred_calib.min()) | (pred > pred_calib.max()))))
        estimates = {"oracle": trial["y"], "naive": pred, "lcc": lcc.transform(pred)}
        with warnings.catch_warnings():  # counted in `outside_calibration_range` instead
            warnings.simplefilter("ignore", OutOfSupportWarning)
            for rule, tweedie in tweedies.items():
                estimates[f"tweedie ({rule}, calibration density)"] = tweedie.transform(pred)
                estimates[f"tweedie ({rule}, trial density)"] = tweedie.with_density(pred).transform(pred)
        rows += [{"seed": seed, "true_effect": tau, "method": m, "estimate": iptw(v, trial["t"], trial["p"])} for m, v in estimates.items()]
    r2 = float(1 - np.var(calib["y"] - pred_calib) / np.var(calib["y"]))
    fit = {
        "seed": seed,
        "calibration_slope_b": lcc.b_,
        "r2_calibration": r2,
        "sigma": tweedies["scott"].sigma_,
        "outside_calibration_range": float(np.mean(outside)),
    }
    fit |= {f"bandwidth_{rule}": t.bandwidth_ for rule, t in tweedies.items()}
    trust = correction_diagnostics(pred_calib, calib["y"], seed=seed)  # what the diagnostics predict, before any trial
    fit |= {f"heldout_slope_{m}": v for m, v in trust.heldout_slope.items()} | {"favoured": trust.favoured, "agree": trust.agree}
    return pd.DataFrame(rows), fit


def slopes(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per method: slope and intercept of estimated on true effect, and the RMSE of the estimates."""
    out = []
    for method, part in estimates.groupby("method", sort=False):
        slope, intercept = np.polyfit(part["true_effect"], part["estimate"], 1)
        rmse = float(np.sqrt(np.mean((part["estimate"] - part["true_effect"]) ** 2)))
        out.append({"method": method, "slope": slope, "intercept": intercept, "rmse": rmse})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(20)))
    parser.add_argument("--n-train", type=int, default=10_000)
    parser.add_argument("--n-calibration", type=int, default=2_000)
    parser.add_argument("--n-trial", type=int, default=10_000)
    parser.add_argument("--sigma-x", type=float, default=0.3)
    parser.add_argument("--survey-effect", type=float, default=0.0, help="tau in the survey population (training and calibration)")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/study2_simulation[_survey_effect_<tau>].json")
    args = parser.parse_args()
    suffix = "" if args.survey_effect == 0 else f"_survey_effect_{args.survey_effect:g}"
    args.out = args.out or f"benchmarks/results/study2_simulation{suffix}.json"
    started = time.perf_counter()
    runs = (run(s, args.n_train, args.n_calibration, args.n_trial, args.sigma_x, args.survey_effect) for s in args.seeds)
    parts, fits = zip(*runs, strict=True)
    estimates = pd.concat(parts, ignore_index=True)
    per_seed = pd.concat([slopes(p).assign(seed=s) for s, p in estimates.groupby("seed")], ignore_index=True)
    summary = (
        per_seed.groupby("method", sort=False)
        .agg(slope=("slope", "mean"), slope_sd=("slope", "std"), intercept=("intercept", "mean"), rmse=("rmse", "mean"))
        .reset_index()
    )
    print(pd.DataFrame(fits).round(4).to_markdown(index=False))
    print(summary.round(3).to_markdown(index=False))
    print(f"{time.perf_counter() - started:.0f} s")
    write_results(args.out, summary.to_dict("records"), vars(args), fits=list(fits), per_seed=per_seed.to_dict("records"))


if __name__ == "__main__":
    main()
