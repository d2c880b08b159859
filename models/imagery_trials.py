"""One map, many trials, with the treatment reaching the map through the imagery.

``models.many_trials.simulate_trials`` moves treated units' predictions by ``slope x effect``: the
linear-shrinkage model under which LCC is unbiased by construction, so it cannot show a correction
failing. Here a treated unit's true wealth gain changes its surroundings the way wealth differences
across places do in the simulator (``models.simulate.wealth_response``: richer places have more
built-up land and cropland, less bare land): on the last date, a share ``effect x slope_c`` of the
chip's valid pixels switches to each class c that gains, with the simulator's spectra, texture and
sensor noise. The wealth map's own model (encoder + ridge, fitted once) then re-predicts the treated
units from their changed chips, and every method estimates the ATE from those re-predicted outcomes.
Pixels switch at random places in the chip, not where the classes that lose share were: a
simplification of how settlements grow.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.debias import LinearCalibrationCorrection, TweedieCorrection
from models.many_trials import CalibrationDraws, TrialDesign, draw_trials
from models.simulate import SPECTRA
from models.training import SequenceData


@dataclass(frozen=True)
class WealthResponse:
    """Change in each class's share of a chip per unit of wealth, and the spectra's noise."""

    share_per_wealth: dict[int, float]
    texture: float = 0.08  # multiplicative per-pixel variation, as the simulator's texture
    sensor_noise: float = 0.008

    @classmethod
    def read(cls, path: str | Path) -> WealthResponse:
        shares = json.loads(Path(path).read_text())["share_per_wealth"]
        return cls({int(k): float(v) for k, v in shares.items()})

    def gains(self, effect: float) -> dict[int, float]:
        """Share of the chip that switches to each gaining class for a wealth change ``effect``
        (scaled down if it would exceed the whole chip)."""
        gains = {c: effect * s for c, s in self.share_per_wealth.items() if effect * s > 0 and c in SPECTRA}
        total = sum(gains.values())
        return {c: g / max(total, 1.0) for c, g in gains.items()}

    def apply(self, data: SequenceData, effect: float, rng: np.random.Generator) -> SequenceData:
        """A copy of ``data`` (normalized, as encoders read it) whose last date shows the change."""
        gains = self.gains(effect)
        x, valid = data.x.clone(), data.valid.clone()
        if not gains:
            return SequenceData(data.unit_ids, x, valid, data.years, data.band_mean, data.band_std)
        mean, std = data.band_mean.numpy()[:, None], data.band_std.numpy()[:, None]
        for i in range(x.shape[0]):
            pixels = np.flatnonzero(valid[i, -1].numpy().ravel())
            order = rng.permutation(pixels)
            start = 0
            for code, share in gains.items():
                chosen = order[start : start + int(round(share * len(pixels)))]
                start += len(chosen)
                if not len(chosen):
                    continue
                spectrum = np.asarray(SPECTRA[code], np.float32)[:, None] * (1 + self.texture * rng.standard_normal(len(chosen)))
                spectrum = spectrum + self.sensor_noise * rng.standard_normal(spectrum.shape)
                rows, cols = np.unravel_index(chosen, x.shape[-2:])
                x[i, -1, :, rows, cols] = torch.from_numpy(((spectrum - mean) / std).astype(np.float32))
        return SequenceData(data.unit_ids, x, valid, data.years, data.band_mean, data.band_std)


def imagery_trials(
    data: SequenceData,
    truth: np.ndarray,
    predict: Callable[[SequenceData], np.ndarray],
    response: WealthResponse,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign = TrialDesign(),
    draws: CalibrationDraws | None = None,
) -> pd.DataFrame:
    """Trials drawn from the pool places in ``data`` (their chip sequences) with true wealth
    ``truth``: treated units' wealth rises by each of ``design.effects`` and their last-date chips
    change by ``response``; ``predict`` (the map's model) re-predicts them. One row per trial and
    method, ``response = "imagery"``."""
    baseline = predict(data)

    def respond(idx: np.ndarray, t: np.ndarray, effect: float, rng: np.random.Generator) -> np.ndarray:
        prediction = baseline[idx].copy()
        treated = idx[t == 1]
        if effect != 0 and len(treated):
            prediction[t == 1] = predict(response.apply(data.subset(treated), effect, rng))
        return prediction

    return draw_trials(truth, respond, lcc, tweedie, design, draws, "imagery")


def survey_pool_trials(
    pool: pd.DataFrame,
    catalog: pd.DataFrame,
    fitted,
    model,
    response: WealthResponse,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign,
    draws: CalibrationDraws | None,
    workdir: Path,
    device,
) -> pd.DataFrame:
    """``imagery_trials`` over surveyed places (survey_id, lon, lat, wealth: the held-out split),
    their chips read from ``catalog`` at the encoder's chip size, re-predicted by the map's model."""
    from models.grid import place_sequences
    from models.wealth import predictor

    places = pool.rename(columns={"survey_id": "unit_id"})[["unit_id", "lon", "lat", "wealth"]]
    data = place_sequences(places[["unit_id", "lon", "lat"]], catalog, fitted, workdir)
    truth = places.set_index("unit_id").loc[list(data.unit_ids), "wealth"].to_numpy(dtype=float)
    return imagery_trials(data, truth, predictor(model, fitted, device), response, lcc, tweedie, design, draws)
