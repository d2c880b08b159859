"""Train encoders and embed units: self-supervised, supervised (cross-fitted) or random weights.

The same code runs on CPU and CUDA; on CUDA it adds bf16 autocast, channels_last, pinned-memory
loading and optional ``torch.compile``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
import xarray as xr
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from models.ingest.folds import CrossFitting
from models.io.storage import atomic_path
from models.representation.encoders import EncoderSpec, SequenceEncoder, parameter_count

Objective = Literal["contrastive", "prognostic", "random"]


@dataclass
class SequenceData:
    """A cube in memory as tensors: normalized reflectance (NaN -> 0), validity, years since start."""

    unit_ids: np.ndarray
    x: torch.Tensor  # (N, T, C, H, W) float32
    valid: torch.Tensor  # (N, T, H, W) bool
    years: torch.Tensor  # (T,)
    band_mean: torch.Tensor
    band_std: torch.Tensor

    def subset(self, idx: np.ndarray) -> SequenceData:
        return SequenceData(self.unit_ids[idx], self.x[idx], self.valid[idx], self.years, self.band_mean, self.band_std)

    def data_hash(self) -> str:
        h = hashlib.sha256("|".join(map(str, self.unit_ids)).encode())
        h.update(str(tuple(self.x.shape)).encode())
        h.update(self.band_mean.numpy().tobytes())
        return h.hexdigest()[:16]


def _time_index(cube: xr.Dataset, frames: list[int] | None) -> list[int]:
    return list(range(cube.sizes["time"])) if frames is None else [f % cube.sizes["time"] for f in frames]


def _blocks(index: np.ndarray, block: int) -> Iterator[np.ndarray | slice]:
    """Unit positions block by block: a slice where they are consecutive (a plain Zarr read)."""
    for start in range(0, len(index), block):
        part = index[start : start + block]
        yield slice(int(part[0]), int(part[-1]) + 1) if part[-1] - part[0] == len(part) - 1 else part


def _reflectance(cube: xr.Dataset, units, time_idx: list[int]) -> np.ndarray:
    # float32 whatever the stored encoding (scaled integers decode to float64)
    return np.array(cube["reflectance"].isel(unit=units, time=time_idx).values, dtype=np.float32)  # a copy: callers write to it


def band_statistics(cube: xr.Dataset, frames: list[int] | None = None, block: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and sd of each band over the valid pixels of every unit, read block by block with
    float64 sums, so the whole cube never has to fit in memory."""
    time_idx, n = _time_index(cube, frames), cube.sizes["unit"]
    count = total = squares = 0.0
    for units in _blocks(np.arange(n), block):
        x = _reflectance(cube, units, time_idx)
        finite = np.isfinite(x)
        x[~finite] = 0.0
        count = count + finite.sum(axis=(0, 1, 3, 4))
        total = total + x.sum(axis=(0, 1, 3, 4), dtype=np.float64)
        squares = squares + np.square(x).sum(axis=(0, 1, 3, 4), dtype=np.float64)
    count = np.maximum(count, 1)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32).clamp(min=1e-6)


def load_sequences(
    cube: xr.Dataset,
    frames: list[int] | None = None,
    block: int = 1024,
    stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    units: np.ndarray | None = None,
) -> SequenceData:
    """Read a cube's units (all, or the sorted positions ``units``) block by block into normalized
    tensors; ``frames`` picks dates (e.g. [-1] for image-only).

    Band statistics are those of every unit in the cube (streamed) unless ``stats`` (from a trained
    encoder) is given, so a training sample is normalized like the units it will embed.
    """
    time_idx = _time_index(cube, frames)
    mean, std = stats if stats is not None else band_statistics(cube, frames, block)
    index = np.arange(cube.sizes["unit"]) if units is None else np.asarray(units)
    x = torch.empty((len(index), len(time_idx), *cube["reflectance"].shape[2:]), dtype=torch.float32)  # filled in place: no second copy
    valid = torch.empty((len(index), len(time_idx), *cube["valid"].shape[2:]), dtype=torch.bool)
    start = 0
    for part in _blocks(index, block):
        raw = torch.from_numpy(_reflectance(cube, part, time_idx))
        rows = slice(start, start + len(raw))
        torch.nan_to_num((raw - mean.view(1, 1, -1, 1, 1)) / std.view(1, 1, -1, 1, 1), nan=0.0, out=x[rows])
        valid[rows] = torch.from_numpy(np.ascontiguousarray(cube["valid"].isel(unit=part, time=time_idx).values))
        start += len(raw)
    dates = cube["time"].values[time_idx].astype("datetime64[D]").astype(np.int64)
    years = torch.tensor((dates - cube["time"].values[0].astype("datetime64[D]").astype(np.int64)) / 365.25, dtype=torch.float32)
    ids = np.asarray(cube["unit"].values.tolist(), dtype=object)[index]
    return SequenceData(ids, x, valid, years, mean, std)


def training_sample(n: int, max_units: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted positions of at most ``max_units`` of ``n`` units to train on (None: all of them).

    Training time and memory grow with the units trained on, embedding only with the units
    embedded; a cap bounds the first, while every unit is still embedded (streamed)."""
    if max_units is None or n <= max_units:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_units, replace=False))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA
    compile: bool = False
    fast: bool = True  # channels_last + pinned memory on CUDA; False gives the fp32 eager baseline


def resolve_device(name: str = "auto") -> torch.device:
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else ("cpu" if name == "auto" else name))


def _augment(x: torch.Tensor, valid: torch.Tensor, keep_p: float = 0.7) -> tuple[torch.Tensor, torch.Tensor]:
    """A view for contrastive learning: random frame dropout plus a random flip of the whole sequence."""
    keep = torch.rand(valid.shape[:2], device=valid.device) < keep_p
    keep[torch.arange(keep.shape[0]), torch.randint(0, keep.shape[1], (keep.shape[0],), device=keep.device)] = True
    valid = valid & keep[:, :, None, None]
    if torch.rand(()) < 0.5:
        x, valid = x.flip(-1), valid.flip(-1)
    if torch.rand(()) < 0.5:
        x, valid = x.flip(-2), valid.flip(-2)
    return x, valid


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    logits = a @ b.T / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


class _Heads(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.regression = nn.Linear(dim, 1)


def train_encoder(
    spec: EncoderSpec,
    data: SequenceData,
    objective: Objective,
    cfg: TrainConfig,
    device: torch.device,
    target: np.ndarray | None = None,
    log: Callable[[dict], None] = lambda row: None,
) -> tuple[SequenceEncoder, list[dict]]:
    """Train one encoder on ``data`` (supervised objectives use only units with a finite target)."""
    torch.manual_seed(cfg.seed)
    encoder = SequenceEncoder(spec)
    if objective == "random":
        return encoder.eval(), []
    heads = _Heads(spec.dim)
    dataset = TensorDataset(data.x, data.valid)
    if objective == "prognostic":
        if target is None:
            raise ValueError("the prognostic objective needs a target")
        keep = np.isfinite(target)
        y = torch.zeros(len(target), dtype=torch.float32)
        y[keep] = torch.tensor((target[keep] - target[keep].mean()) / (target[keep].std() + 1e-9), dtype=torch.float32)
        dataset = Subset(TensorDataset(data.x, data.valid, y), np.flatnonzero(keep).tolist())  # rows by index, not copied
    cuda = device.type == "cuda"
    encoder.to(device)
    heads.to(device)
    if cuda and cfg.fast:
        encoder.to(memory_format=torch.channels_last)
    step_model = torch.compile(encoder) if cfg.compile else encoder
    loader = DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(dataset) > cfg.batch_size,
        pin_memory=cuda and cfg.fast,
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    params = list(encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(1, cfg.epochs * len(loader)))
    years = data.years.to(device)
    history = []
    for epoch in range(cfg.epochs):
        encoder.train()
        started, total, seen = time.perf_counter(), 0.0, 0
        for batch in loader:
            batch = [t.to(device, non_blocking=True) for t in batch]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda and cfg.amp):
                if objective == "contrastive":
                    (xa, va), (xb, vb) = _augment(*batch[:2]), _augment(*batch[:2])
                    loss = _info_nce(
                        heads.projection(step_model(xa, va, years)), heads.projection(step_model(xb, vb, years)), cfg.temperature
                    )
                else:
                    loss = F.mse_loss(heads.regression(step_model(batch[0], batch[1], years)).squeeze(1).float(), batch[2])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(batch[0])
            seen += len(batch[0])
        seconds = time.perf_counter() - started
        row = {"epoch": epoch + 1, "loss": total / max(seen, 1), "seconds": seconds, "sequences_per_second": seen / seconds}
        history.append(row)
        log(row)
    return encoder.eval(), history


@torch.no_grad()
def embed(encoder: SequenceEncoder, data: SequenceData, device: torch.device, batch_size: int = 256) -> np.ndarray:
    encoder = encoder.to(device).eval()
    years = data.years.to(device)
    out = [
        encoder(data.x[i : i + batch_size].to(device), data.valid[i : i + batch_size].to(device), years).float().cpu()
        for i in range(0, len(data.unit_ids), batch_size)
    ]
    return torch.cat(out).numpy()


@dataclass
class FittedEncoders:
    """One encoder (outcome-free objectives) or one per fold (supervised, cross-fitted)."""

    spec: EncoderSpec
    objective: Objective
    folds: int  # 1 when no outcome was used
    models: list[SequenceEncoder]
    band_mean: torch.Tensor
    band_std: torch.Tensor
    frames: list[int] | None
    meta: dict

    @property
    def chip_size(self) -> int:
        """Chip side in pixels the encoders were trained on: new places are read at this size."""
        return int(self.meta["chip_size"])

    def fold_of(self, unit_ids: np.ndarray, clusters: pd.Series | None = None) -> np.ndarray:
        """Each unit's fold: by unit id, or by cluster when the encoders were fitted with clusters."""
        if self.folds == 1:
            return np.zeros(len(unit_ids), dtype=np.int64)
        by_cluster = self.meta.get("fold_by") == "cluster"
        if by_cluster and clusters is None:
            raise ValueError("these encoders were cross-fitted with whole clusters per fold: pass the trial's clusters")
        return CrossFitting(self.folds, self.meta["fold_seed"]).assign(unit_ids, clusters if by_cluster else None)

    def sequences(self, cube: xr.Dataset, units: np.ndarray | None = None) -> SequenceData:
        """A cube's sequences as these encoders expect them: their frames, their band statistics."""
        return load_sequences(cube, frames=self.frames, stats=(self.band_mean, self.band_std), units=units)

    def blocks(self, cube: xr.Dataset, block: int = 4096) -> Iterator[SequenceData]:
        """The cube's sequences ``block`` units at a time: embedding memory is bounded by the block."""
        for start in range(0, cube.sizes["unit"], block):
            yield self.sequences(cube, np.arange(start, min(start + block, cube.sizes["unit"])))

    def transform(self, data: SequenceData, device: torch.device, clusters: pd.Series | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and the fold of each unit: unit i is embedded by the model of its own fold."""
        folds = self.fold_of(data.unit_ids, clusters)
        out = np.zeros((len(folds), self.spec.dim), dtype=np.float32)
        for k, model in enumerate(self.models):
            idx = np.flatnonzero(folds == k)
            if len(idx):
                out[idx] = embed(model, data.subset(idx), device)
        return out, folds

    def transform_each(self, data: SequenceData, device: torch.device) -> list[np.ndarray]:
        """Embeddings of places outside the trial by every fold model. Fold models have different
        embedding spaces, so average what is predicted from each, never the embeddings themselves."""
        return [embed(model, data, device) for model in self.models]


def fit_encoders(
    spec: EncoderSpec,
    data: SequenceData,
    objective: Objective,
    cfg: TrainConfig,
    device: torch.device,
    target: np.ndarray | None = None,
    cross_fitting: CrossFitting = CrossFitting(),
    frames: list[int] | None = None,
    log: Callable[[dict], None] = lambda row: None,
    trainer: Callable = train_encoder,
    clusters: pd.Series | None = None,
) -> FittedEncoders:
    """Fit the encoder(s). Supervised objectives are cross-fitted: the model of fold k never sees
    the targets of fold k's units (of fold k's clusters, when ``clusters`` labels the units), and
    ``transform`` embeds each unit with its own fold's model. Each model gets the whole ``data``
    with the other folds' targets only (NaN elsewhere; the trainer uses units with a target), so
    no fold's copy of the chips is made."""
    started = time.perf_counter()
    models, histories = [], []
    k = cross_fitting.folds if objective == "prognostic" else 1
    assignment = cross_fitting.assign(data.unit_ids, clusters) if k > 1 else np.zeros(len(data.unit_ids), dtype=np.int64)
    for fold in range(k):
        fold_target = None if target is None or objective != "prognostic" else np.asarray(target, dtype=float)
        if fold_target is not None and k > 1:
            fold_target = np.where(assignment != fold, fold_target, np.nan)
        model, history = trainer(spec, data, objective, cfg, device, fold_target, lambda row, f=fold: log({"fold": f, **row}))
        models.append(model.cpu())
        histories.append(history)
    meta = {
        "spec": spec.to_dict(),
        "objective": objective,
        "train": asdict(cfg),
        "seed": cfg.seed,
        "folds": k,
        "fold_seed": cross_fitting.seed,
        "fold_by": "cluster" if clusters is not None and k > 1 else "unit",
        "frames": frames,
        "chip_size": int(data.x.shape[-1]),
        "data_hash": data.data_hash(),
        "parameters": parameter_count(models[0]),
        "device": str(device),
        "seconds": time.perf_counter() - started,
        "history": histories,
    }
    return FittedEncoders(spec, objective, k, models, data.band_mean, data.band_std, frames, meta)


def save_encoders(fitted: FittedEncoders, path: str | Path) -> Path:
    """One safetensors file: every fold's weights, the band statistics, and the config as metadata."""
    tensors = {f"fold{k}.{name}": t.detach().cpu().contiguous() for k, m in enumerate(fitted.models) for name, t in m.state_dict().items()}
    tensors["band_mean"], tensors["band_std"] = fitted.band_mean.contiguous(), fitted.band_std.contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"eotrials": json.dumps(fitted.meta, default=float)})
    return Path(path)


def load_encoders(path: str | Path) -> FittedEncoders:
    """Rebuild encoders from safetensors (no pickle is ever loaded)."""
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["eotrials"])
        names = f.keys()  # a safetensors handle, not a dict
        tensors = {k: f.get_tensor(k) for k in names}
    spec = EncoderSpec(**meta["spec"])
    models = []
    for k in range(meta["folds"]):
        model = SequenceEncoder(spec)
        model.load_state_dict({n.split(".", 1)[1]: t for n, t in tensors.items() if n.startswith(f"fold{k}.")})
        models.append(model.eval())
    return FittedEncoders(spec, meta["objective"], meta["folds"], models, tensors["band_mean"], tensors["band_std"], meta["frames"], meta)
