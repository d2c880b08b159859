"""The wealth map's model: ridge regression of surveyed wealth on image-sequence embeddings.

The survey is split by id into train (fit), calibration (fits the debiasing corrections, never the
model) and test (honest R^2), so the corrections and the reported skill never see training data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.linear_model import RidgeCV
from sklearn.metrics import r2_score

from models.ingest.chips import CubeSummary, write_sequence_cube
from models.ingest.folds import split_of
from models.ingest.units import locate_units
from models.representation.grid import GridEmbedding, GridMap, place_cube
from models.representation.training import SequenceData, embed

SPLIT_NAMES = ("train", "calibration", "test")


@dataclass
class WealthModel:
    """Ridge (alpha chosen by leave-one-out CV) on the embeddings of one encoder model.

    ``fit`` takes every surveyed place and uses only its train split; ``score`` gives R^2 per split.
    """

    alphas: tuple[float, ...] = tuple(np.logspace(-3, 3, 13))
    seed: int = 0
    encoder_model: int = 0  # which fold model's embeddings (outcome-free encoders have only model 0)

    def split(self, unit_ids) -> np.ndarray:
        return split_of(unit_ids, self.seed)

    def fit(self, X: np.ndarray, y: np.ndarray, unit_ids) -> WealthModel:
        train = self.split(unit_ids) == "train"
        ridge = RidgeCV(alphas=self.alphas).fit(X[train], y[train])
        self.coef_, self.intercept_, self.alpha_ = ridge.coef_.astype(float), float(ridge.intercept_), float(ridge.alpha_)
        self.r2_ = self.score(X, y, unit_ids)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, float) @ self.coef_ + self.intercept_

    def score(self, X: np.ndarray, y: np.ndarray, unit_ids) -> dict[str, float]:
        """R^2 on each split (test is the honest one)."""
        split, prediction = self.split(unit_ids), self.predict(X)
        return {s: float(r2_score(y[split == s], prediction[split == s])) for s in SPLIT_NAMES}

    def to_dict(self) -> dict:
        return {
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "alpha": self.alpha_,
            "r2": self.r2_,
            "encoder_model": self.encoder_model,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, d: dict) -> WealthModel:
        self = cls(seed=d["seed"], encoder_model=d["encoder_model"])
        self.coef_, self.intercept_, self.alpha_, self.r2_ = (
            np.asarray(d["coef"], float),
            float(d["intercept"]),
            float(d["alpha"]),
            dict(d["r2"]),
        )
        return self


def survey_places(survey: pd.DataFrame, catalog: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Surveyed places inside the imagery (as unit_id, lon, lat, wealth) and those outside."""
    survey = survey.rename(columns={"survey_id": "unit_id"})
    missing = {"unit_id", "lon", "lat", "wealth"} - set(survey.columns)
    if missing:
        raise ValueError(f"survey table lacks column(s) {sorted(missing)} (StudySource.survey_table needs survey_id, lon, lat, wealth)")
    if survey[["lon", "lat", "wealth"]].isna().any().any():
        raise ValueError("survey table has missing lon, lat or wealth values: remove or fill those rows in StudySource.survey_table")
    survey["unit_id"] = survey["unit_id"].astype(str)
    inside, outside = locate_units(survey, catalog)
    return pd.DataFrame(inside.drop(columns="geometry")), outside


def survey_cube(survey: pd.DataFrame, catalog: pd.DataFrame, path: Path, size: int) -> tuple[pd.DataFrame, int, CubeSummary]:
    """The surveyed places' chip sequences as a Zarr cube at ``path`` (what the map's own encoder
    learns from: no trial's units, so every trial can use the map): the places inside the imagery,
    the number outside, and what the extraction found."""
    places, outside = survey_places(survey, catalog)
    summary = write_sequence_cube(places[["unit_id", "lon", "lat"]], catalog, path, size=size)
    return places, len(outside), summary


def fit_on_survey(places: pd.DataFrame, cube: xr.Dataset, fitted, device, seed: int = 0) -> tuple[WealthModel, pd.DataFrame]:
    """Embed every surveyed place in ``cube`` (``survey_cube``'s, block by block) and fit the model
    on its train split.

    Returns the model and the predictions at every place with its split (survey_id, lon, lat,
    wealth, prediction, split).
    """
    model = WealthModel(seed=seed)
    encoder = fitted.models[model.encoder_model]
    ids, X = [], []
    for data in fitted.blocks(cube):
        ids.append(np.asarray(data.unit_ids, dtype=str))
        X.append(embed(encoder, data, device))
    ids, X = np.concatenate(ids), np.concatenate(X)
    kept = places.set_index("unit_id").loc[ids]
    y = kept["wealth"].to_numpy(dtype=float)
    model.fit(X, y, ids)
    predictions = pd.DataFrame(
        {"survey_id": ids, "lon": kept["lon"].to_numpy(), "lat": kept["lat"].to_numpy(), "wealth": y}
        | {"prediction": model.predict(X), "split": model.split(ids)}
    )
    return model, predictions


def predict_map(model: WealthModel, grid: GridEmbedding) -> GridMap:
    """Predicted wealth over the grid (layer ``wealth_prediction``), block by block (``GridEmbedding.blocks``)."""
    blocks = grid.blocks(models=[model.encoder_model])
    return grid.to_map({"wealth_prediction": np.concatenate([model.predict(e) for _, (e,) in blocks])})


def predictor(model: WealthModel, fitted, device) -> Callable[[SequenceData], np.ndarray]:
    """The map's prediction from chip sequences as ``fitted.sequences`` gives them: the encoder the
    model was fitted on, then the ridge."""
    encoder = fitted.models[model.encoder_model]
    return lambda data: model.predict(embed(encoder, data, device))


def predict_places(model: WealthModel, fitted, places: pd.DataFrame, catalog: pd.DataFrame, workdir: Path, device) -> pd.DataFrame:
    """Predicted wealth (unit_id, prediction) at places given as unit_id, lon, lat, from their chip
    sequences at the map encoder's chip size (a cube under ``workdir``, read block by block, so a
    trial of any size fits in memory); places without data are left out."""
    predict = predictor(model, fitted, device)
    parts = [
        pd.DataFrame({"unit_id": data.unit_ids.astype(str), "prediction": predict(data)})
        for data in fitted.blocks(place_cube(places, catalog, fitted.chip_size, workdir))
    ]
    return pd.concat(parts, ignore_index=True)
