"""Encoders: shapes, masking, save/load, cross-fitting, and the GPU path."""

import numpy as np
import pandas as pd
import pytest
import torch

from models.ingest.catalog import build_catalog
from models.ingest.chips import open_cube, write_sequence_cube
from models.ingest.folds import CrossFitting, fold_of
from models.representation.embeddings import embedding_table
from models.representation.encoders import EncoderSpec, SequenceEncoder, parameter_count
from models.representation.training import (
    SequenceData,
    TrainConfig,
    band_statistics,
    fit_encoders,
    load_encoders,
    load_sequences,
    resolve_device,
    save_encoders,
    train_encoder,
    training_sample,
)

CPU = torch.device("cpu")


def batch(n=3, t=5, c=6, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, t, c, size, size, generator=g),
        torch.rand(n, t, size, size, generator=g) > 0.2,
        torch.arange(t, dtype=torch.float32),
    )


def synthetic(n=40, t=4, size=16, seed=0) -> SequenceData:
    x, valid, years = batch(n, t, size=size, seed=seed)
    return SequenceData(np.array([f"u{i}" for i in range(n)], dtype=object), x, valid, years, torch.zeros(6), torch.ones(6))


@pytest.mark.parametrize("aggregator", ["transformer", "gru"])
def test_shapes_and_capacities(aggregator):
    x, valid, years = batch()
    sizes = []
    for capacity in ("small", "medium", "large"):
        spec = EncoderSpec(capacity=capacity, aggregator=aggregator)
        out = SequenceEncoder(spec).eval()(x, valid, years)
        assert out.shape == (3, spec.dim) and torch.isfinite(out).all()
        sizes.append(parameter_count(SequenceEncoder(spec)))
    assert 10_000 < sizes[0] < sizes[1] < sizes[2] < 5_000_000


@pytest.mark.parametrize("aggregator", ["transformer", "gru"])
def test_fully_masked_frame_changes_nothing(aggregator):
    torch.manual_seed(0)
    model = SequenceEncoder(EncoderSpec(aggregator=aggregator)).eval()
    x, valid, years = batch()
    valid[:, 2] = False  # frame 2 is all cloud
    garbage = x.clone()
    garbage[:, 2] = 1e3 * torch.randn_like(x[:, 2])
    with torch.no_grad():
        np.testing.assert_allclose(model(x, valid, years).numpy(), model(garbage, valid, years).numpy(), atol=1e-5)
        dropped = model(x[:, [0, 1, 3, 4]], valid[:, [0, 1, 3, 4]], years[[0, 1, 3, 4]])
        np.testing.assert_allclose(model(x, valid, years).numpy(), dropped.numpy(), atol=1e-5)
        # a frame that is valid does change the embedding (the test above could fail)
        valid[:, 2] = True
        assert not torch.allclose(model(x, valid, years), model(garbage, valid, years))


def test_all_masked_sequence_is_finite():
    model = SequenceEncoder(EncoderSpec()).eval()
    x, valid, years = batch()
    valid[:] = False
    assert torch.isfinite(model(x, valid, years)).all()


def test_save_load_round_trip(tmp_path):
    data = synthetic()
    fitted = fit_encoders(EncoderSpec(), data, "contrastive", TrainConfig(epochs=1, batch_size=16), CPU)
    path = save_encoders(fitted, tmp_path / "enc.safetensors")
    loaded = load_encoders(path)
    assert loaded.meta["data_hash"] == data.data_hash() and loaded.meta["spec"] == EncoderSpec().to_dict()
    assert loaded.meta["history"][0][0]["epoch"] == 1
    np.testing.assert_array_equal(fitted.transform(data, CPU)[0], loaded.transform(data, CPU)[0])


def test_cross_fitting_never_embeds_a_unit_with_a_model_that_saw_its_outcome():
    data = synthetic(n=60)
    target = np.where(np.arange(60) % 3 == 0, np.nan, np.arange(60, dtype=float))  # treated units have no target
    seen: list[set[str]] = []

    def spy(spec, train_data, objective, cfg, device, fold_target, log):
        seen.append({u for u, y in zip(train_data.unit_ids, fold_target, strict=True) if np.isfinite(y)})
        return train_encoder(spec, train_data, objective, cfg, device, fold_target, log)

    fitted = fit_encoders(
        EncoderSpec(),
        data,
        "prognostic",
        TrainConfig(epochs=1, batch_size=16),
        CPU,
        target=target,
        cross_fitting=CrossFitting(5),
        trainer=spy,
    )
    _, folds = fitted.transform(data, CPU)
    assert len(seen) == 5 and len(set(folds)) == 5
    for unit, fold in zip(data.unit_ids, folds, strict=True):
        assert unit not in seen[fold]
    # every unit with a target trains the other folds' models
    assert all(sum(u in s for s in seen) == 4 for u, y in zip(data.unit_ids, target, strict=True) if np.isfinite(y))


def test_cross_fitting_by_cluster_keeps_every_village_out_of_its_own_model():
    data = synthetic(n=60)
    clusters = pd.Series(np.arange(60) // 6, index=data.unit_ids)  # ten villages of six
    seen: list[set[str]] = []

    def spy(spec, train_data, objective, cfg, device, fold_target, log):
        seen.append({u for u, y in zip(train_data.unit_ids, fold_target, strict=True) if np.isfinite(y)})  # the units it learns from
        return train_encoder(spec, train_data, objective, cfg, device, fold_target, log)

    fitted = fit_encoders(
        EncoderSpec(), data, "prognostic", TrainConfig(epochs=1, batch_size=16), CPU,
        target=np.arange(60, dtype=float), cross_fitting=CrossFitting(3), trainer=spy, clusters=clusters,
    )  # fmt: skip
    _, folds = fitted.transform(data, CPU, clusters)
    assert fitted.meta["fold_by"] == "cluster" and (pd.Series(folds).groupby(clusters.to_numpy()).nunique() == 1).all()
    for unit, fold in zip(data.unit_ids, folds, strict=True):
        village = set(clusters.index[clusters == clusters[unit]])
        assert not village & seen[fold]  # no unit of the village trained the model that embeds it
    with pytest.raises(ValueError, match="pass the trial's clusters"):
        fitted.transform(data, CPU)


def test_folds_are_stable_and_balanced():
    ids = np.array([f"U{i:06d}" for i in range(1000)])
    folds = fold_of(ids, 5)
    np.testing.assert_array_equal(folds, fold_of(ids[::-1], 5)[::-1])
    assert np.bincount(folds).min() > 150


@pytest.mark.parametrize("folds", [2, 4, 5])
def test_a_new_fold_seed_draws_a_new_split_not_renamed_folds(folds):
    """CRC32 is affine: with a power-of-two fold count, a new seed only permuted the fold labels."""
    ids = np.array([f"U{i:06d}" for i in range(1000)])
    together = pd.crosstab(fold_of(ids, folds, 0), fold_of(ids, folds, 4))
    assert ((together > 0).sum(axis=1) == folds).all()  # units of one fold spread over every fold of the other seed


def test_random_baseline_is_untrained_and_deterministic():
    data = synthetic()
    a = fit_encoders(EncoderSpec(), data, "random", TrainConfig(seed=3), CPU)
    b = fit_encoders(EncoderSpec(), data, "random", TrainConfig(seed=3), CPU)
    assert a.meta["history"] == [[]]
    np.testing.assert_array_equal(a.transform(data, CPU)[0], b.transform(data, CPU)[0])


def test_training_lowers_the_prognostic_loss():
    data = synthetic(n=128, seed=1)
    data.x[:, :, 3] += torch.linspace(-2, 2, 128).view(-1, 1, 1, 1)  # a band level that varies by unit
    target = data.x[:, :, 3].mean(dim=(1, 2, 3)).numpy()
    _, history = train_encoder(EncoderSpec(), data, "prognostic", TrainConfig(epochs=8, batch_size=16, lr=5e-3), CPU, target)
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]


def test_load_sequences_normalizes_and_picks_frames(small_study, tmp_path):
    catalog = build_catalog(small_study.imagery_dir)
    write_sequence_cube(pd.read_csv(small_study.trial_table("west")), catalog, tmp_path / "c.zarr", size=16)
    cube = open_cube(tmp_path / "c.zarr")
    data = load_sequences(cube, block=50)
    assert data.x.shape == (cube.sizes["unit"], 4, 6, 16, 16) and torch.isfinite(data.x).all()
    assert abs(float(data.x[data.valid.unsqueeze(2).expand_as(data.x)].mean())) < 0.05
    last = load_sequences(cube, frames=[-1], stats=(data.band_mean, data.band_std))
    torch.testing.assert_close(last.x[:, 0], data.x[:, -1])
    assert last.years.tolist() == [pytest.approx(float(data.years[-1]))]  # dates stay relative to the sequence start


def test_streamed_reads_match_the_whole_cube_in_memory(small_study, tmp_path):
    catalog = build_catalog(small_study.imagery_dir)
    write_sequence_cube(pd.read_csv(small_study.trial_table("west")), catalog, tmp_path / "c.zarr", size=16)
    cube = open_cube(tmp_path / "c.zarr")
    raw = cube["reflectance"].values.astype(np.float64)  # (unit, time, band, y, x)
    mean, std = band_statistics(cube, block=7)
    np.testing.assert_allclose(mean.numpy(), np.nanmean(raw, axis=(0, 1, 3, 4)), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), np.nanstd(raw, axis=(0, 1, 3, 4)), rtol=1e-4)
    whole = load_sequences(cube, block=10_000)
    sample = training_sample(cube.sizes["unit"], 25, seed=1)
    part = load_sequences(cube, block=4, units=sample)  # non-consecutive positions, several blocks
    assert len(sample) == 25 and list(part.unit_ids) == list(whole.unit_ids[sample])
    torch.testing.assert_close(part.x, whole.x[sample])
    torch.testing.assert_close(part.valid, whole.valid[sample])
    assert training_sample(cube.sizes["unit"], cube.sizes["unit"]) is None  # under the cap: every unit
    fitted = fit_encoders(EncoderSpec(), part, "random", TrainConfig(), CPU)
    streamed, at_once = embedding_table(fitted, cube, CPU, block=9), embedding_table(fitted, cube, CPU, block=10_000)
    assert len(streamed) == cube.sizes["unit"] and list(streamed["unit_id"]) == list(whole.unit_ids)
    np.testing.assert_allclose(streamed.filter(regex="^e").to_numpy(), at_once.filter(regex="^e").to_numpy(), atol=1e-5)


@pytest.mark.gpu
def test_gpu_fast_path_trains_in_bf16():
    device = resolve_device("cuda")
    data = synthetic(n=128, size=32)
    fitted = fit_encoders(EncoderSpec(capacity="medium"), data, "contrastive", TrainConfig(epochs=2, batch_size=32, amp=True), device)
    assert fitted.meta["device"].startswith("cuda")
    assert all(np.isfinite(r["loss"]) for r in fitted.meta["history"][0])
    emb, _ = fitted.transform(data, device)
    emb_cpu, _ = fitted.transform(data, CPU)
    np.testing.assert_allclose(emb, emb_cpu, atol=5e-2)
