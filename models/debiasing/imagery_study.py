"""One map, many trials, with the treatment reaching the map through the imagery.

``models.debiasing.trial_effects.simulate_trials`` moves treated units' predictions by ``slope x effect``: the
linear-shrinkage model under which LCC is unbiased by construction, so it cannot show a correction
failing. Here the simulator has written post-treatment imagery (``models.simulation.simulator``): the
dates from the trials' start on again (in one setting the last date only), as they would look if
every surveyed place's wealth had changed by ``effect``, its
surroundings changing the way wealth differences across places do (richer places have more
built-up land and cropland, less bare land), with the simulator's spectra, texture and noise. The
wealth map's own model (encoder + ridge, fitted once) predicts every pool place from its observed
chips and from each post-treatment version; a simulated trial's treated units take the
post-treatment prediction of its effect, its control units the observed one, and every method
estimates the ATE from those outcomes. Each change setting lays the switched pixels out in its own
pattern (scattered, patchy, a growth ring around an unchanged core), so the map's response to a
treatment can be set beside its cross-sectional calibration slope.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from models.debiasing.corrections import LinearCalibrationCorrection, TweedieCorrection
from models.debiasing.trial_effects import CalibrationDraws, TrialDesign, draw_trials
from models.ingest.catalog import build_catalog


@dataclass(frozen=True)
class PostTreatmentImagery:
    """One change setting of the simulator's post-treatment scenes (``setting``, e.g. "ring, last 4
    dates"): the dates that carry the change and, per wealth change, the folder of their GeoTIFFs.
    ``read`` takes the JSON index (paths relative to it) and returns every setting."""

    setting: str
    dates: tuple[pd.Timestamp, ...]
    scenes: dict[float, Path]

    @classmethod
    def read(cls, path: str | Path) -> list[PostTreatmentImagery]:
        index, root = json.loads(Path(path).read_text()), Path(path).parent
        if "settings" not in index:
            raise ValueError(f"{path} is a post-treatment index from before change settings: simulate the demo study again")
        return [
            cls(name, tuple(pd.Timestamp(d) for d in s["dates"]), {float(k): root / v for k, v in s["scenes"].items()})
            for name, s in index["settings"].items()
        ]

    def catalog(self, observed: pd.DataFrame, effect: float) -> pd.DataFrame:
        """``observed`` with its scenes of this setting's dates replaced by the post-treatment ones for ``effect``."""
        if effect not in self.scenes:
            raise KeyError(f"no post-treatment imagery for a wealth change of {effect:+.2f}; the simulator wrote {sorted(self.scenes)}")
        dates = pd.to_datetime(observed["date"])
        missing = [f"{d:%Y-%m-%d}" for d in self.dates if not (dates == d).any()]
        if missing:
            raise ValueError(f"the catalog has no scene of {', '.join(missing)}, the date(s) the post-treatment imagery replaces")
        scenes = build_catalog(self.scenes[effect])
        return pd.concat([observed[~dates.isin(self.dates)], scenes], ignore_index=True).sort_values("date", ignore_index=True)


def imagery_trials(
    truth: np.ndarray,
    observed: np.ndarray,
    post_treatment: Mapping[float, np.ndarray],
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign = TrialDesign(),
    draws: CalibrationDraws | None = None,
    response: str = "imagery",
) -> pd.DataFrame:
    """Trials drawn from pool places with true wealth ``truth`` and map predictions ``observed``:
    treated units' wealth rises by each of ``design.effects`` and their outcome on the map is
    ``post_treatment[effect]`` (predictions from the post-treatment imagery, same order). One row
    per trial and method, labelled ``response``."""
    missing = [e for e in design.effects if e != 0 and e not in post_treatment]
    if missing:
        raise KeyError(f"no post-treatment predictions for effects {missing}")

    def respond(idx: np.ndarray, t: np.ndarray, effect: float, rng: np.random.Generator) -> np.ndarray:
        return np.where(t == 1, post_treatment[effect][idx], observed[idx]) if effect != 0 else observed[idx].copy()

    return draw_trials(truth, respond, lcc, tweedie, design, draws, response)


def survey_pool_trials(
    pool: pd.DataFrame,
    catalog: pd.DataFrame,
    imagery: PostTreatmentImagery,
    fitted,
    model,
    lcc: LinearCalibrationCorrection,
    tweedie: TweedieCorrection,
    design: TrialDesign,
    draws: CalibrationDraws | None,
    workdir: Path,
    device,
) -> pd.DataFrame:
    """``imagery_trials`` over surveyed places (survey_id, lon, lat, wealth: the held-out split):
    chips read from ``catalog`` and from each post-treatment catalog at the encoder's chip size,
    predicted by the map's model. Effects without post-treatment imagery are left out. The response
    is labelled ``imagery: <setting>``."""
    from models.debiasing.wealth_map import predictor
    from models.representation.grid import place_sequences

    predict = predictor(model, fitted, device)
    places = pool.rename(columns={"survey_id": "unit_id"})[["unit_id", "lon", "lat", "wealth"]]
    data = place_sequences(places[["unit_id", "lon", "lat"]], catalog, fitted, Path(workdir) / "observed")
    ids = list(data.unit_ids)
    kept = places.set_index("unit_id").loc[ids].reset_index()
    effects = tuple(e for e in design.effects if e == 0 or e in imagery.scenes)
    post = {}
    for i, effect in enumerate(e for e in effects if e != 0):
        changed = place_sequences(
            kept[["unit_id", "lon", "lat"]],
            imagery.catalog(catalog, effect),
            fitted,
            Path(workdir) / re.sub(r"\W+", "_", f"{imagery.setting}_{i}"),
        )
        post[effect] = pd.Series(predict(changed), index=list(changed.unit_ids)).loc[ids].to_numpy()
    truth = kept["wealth"].to_numpy(dtype=float)
    design = dataclasses.replace(design, effects=effects)
    return imagery_trials(truth, predict(data), post, lcc, tweedie, design, draws, f"imagery: {imagery.setting}")
