"""A seeded demo study written to disk the way real data arrives.

Data-generating process (see docs/simulator.md for the full description):

* land cover in WorldCover classes from thresholded, spatially correlated Gaussian fields; over the
  ``n_dates`` annual dates built-up land expands, cropland spreads and forest is lost, each at a rate
  that varies smoothly across the region;
* a 6-band reflectance sequence (blue, green, red, NIR, SWIR1, SWIR2) that follows the land cover,
  with texture, noise, nodata swath edges and cloud-masked pixels, as tiled, compressed GeoTIFFs;
* one RCT table per trial (``trials``, strips of the region west to east) in EPSG:4326 whose true CATE depends on the land-cover level at baseline, on the
  land-cover change over the sequence and on a covariate; the truth goes to a separate file;
* a survey table whose wealth index depends on the landscape;
* post-treatment imagery for the many-trials evaluation: the dates after a trial's start again, as
  they would look if every surveyed place's wealth had changed by each of ``post_treatment_effects``,
  for each change setting (``ChangeSetting``: which dates carry the change, and its spatial pattern
  around a place: scattered pixels, patches, or a growth ring around an unchanged core).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from rasterio.windows import Window
from scipy import ndimage, spatial, special

from models.ingest.mosaic import write_mosaic
from models.interpretation.landcover import colormap
from models.io.manifest import StudyManifest, StudyTruth
from models.io.storage import atomic_path, write_json

BANDS = ("blue", "green", "red", "nir", "swir1", "swir2")
REFLECTANCE_SCALE = 1e-4
REFLECTANCE_NODATA = -9999
# Rows of the region generated and written at a time: a scene's noise is drawn strip by strip, so a
# large region never holds a float64 copy of its six bands, and a region of at most this many rows
# (the demo's 1,024) draws exactly as one whole-region draw.
STRIP_PX = 1024

# Mean surface reflectance per class and band (blue, green, red, NIR, SWIR1, SWIR2).
SPECTRA: dict[int, tuple[float, ...]] = {
    10: (0.03, 0.05, 0.03, 0.30, 0.15, 0.07),
    20: (0.05, 0.08, 0.08, 0.25, 0.22, 0.13),
    30: (0.05, 0.09, 0.08, 0.32, 0.25, 0.14),
    40: (0.06, 0.10, 0.09, 0.36, 0.24, 0.14),
    50: (0.12, 0.13, 0.15, 0.20, 0.24, 0.22),
    60: (0.15, 0.18, 0.22, 0.27, 0.33, 0.28),
    80: (0.06, 0.05, 0.03, 0.02, 0.01, 0.01),
    90: (0.04, 0.07, 0.05, 0.20, 0.10, 0.05),
}
_SPECTRA_LUT = np.array([SPECTRA.get(code, (0.0,) * len(BANDS)) for code in range(256)], dtype=np.float32)  # code -> spectrum
UNIT_WEIGHT = {10: 0.3, 20: 1.0, 30: 1.0, 40: 3.0, 50: 3.0, 60: 0.5, 80: 0.0, 90: 0.2}
COVARIATES = ("age_head", "female_head", "hh_size", "education_years", "baseline_assets")
Heterogeneity = Literal["both", "static", "change", "none"]
HETEROGENEITY_DRIVERS: tuple[Heterogeneity, ...] = ("both", "static", "change", "none")
ChangePattern = Literal["scattered", "patchy", "ring"]
CHANGE_PATTERNS: tuple[ChangePattern, ...] = ("scattered", "patchy", "ring")


@dataclass(frozen=True)
class ChangeSetting:
    """How a treatment's wealth change shows in the imagery: on the last ``dates`` dates (the trial
    starts at the first of them; 1 = the last date only) and laid out around each place as
    ``pattern``: ``scattered`` pixels, ``patchy`` blobs a few pixels wide, or a growth ``ring``
    spreading outward from an unchanged core."""

    pattern: ChangePattern = "scattered"
    dates: int = 1

    @property
    def name(self) -> str:
        return f"{self.pattern}, last date" if self.dates == 1 else f"{self.pattern}, last {self.dates} dates"

    @property
    def slug(self) -> str:
        return f"{self.pattern}_{self.dates}"


@dataclass(frozen=True)
class SimulationConfig:
    """Every knob of the demo study; the defaults give the embedded demo."""

    n_units: int = 1000  # per trial
    trials: tuple[str, ...] = ("west", "east")  # one trial per strip of the region, west to east
    n_survey: int = 3000
    n_dates: int = 8
    start_year: int = 2016
    region_px: int = 1024
    pixel_size: float = 30.0
    chip_size: int = 32
    crs: str = "EPSG:32636"  # UTM 36N (East Africa)
    origin: tuple[float, float] = (500_000.0, 60_000.0)  # upper-left corner, metres
    treat_prob: float = 0.5
    stratified: bool = False
    ate: float = 1.0
    effect_strength: float = 1.0  # sd of the heterogeneous part of the CATE
    heterogeneity: Heterogeneity = "both"
    noise: float = 1.0  # outcome noise sd
    cloud_fraction: float = 0.04
    post_treatment_effects: tuple[float, ...] = (-0.5, 0.5, 1.0)  # wealth changes with post-treatment imagery
    trial_dates: int = 4  # dates from the trials' start on (counted from the last); they carry the change
    change_patterns: tuple[ChangePattern, ...] = CHANGE_PATTERNS
    seed: int = 0

    def __post_init__(self):
        unknown = [p for p in self.change_patterns if p not in CHANGE_PATTERNS]
        if unknown:
            raise ValueError(f"unknown change pattern(s) {unknown}: choose from {list(CHANGE_PATTERNS)}")
        if self.trial_dates < 1:
            raise ValueError(f"trial_dates must be at least 1 (the last date), got {self.trial_dates}")

    @property
    def change_settings(self) -> tuple[ChangeSetting, ...]:
        """The last date only with scattered change (the first setting studied, kept as a row), then
        every pattern on every date from the trials' start on."""
        dates = min(self.trial_dates, self.n_dates)
        settings = [ChangeSetting("scattered", 1), *(ChangeSetting(p, dates) for p in self.change_patterns)]
        return tuple(dict.fromkeys(settings))


@dataclass(frozen=True)
class StudyPaths:
    """Where a simulated study lives on disk."""

    root: Path
    trials_dir: Path
    survey_table: Path
    imagery_dir: Path
    landcover_dir: Path
    unit_truth: Path
    wealth_truth: Path
    wealth_response: Path
    post_treatment: Path

    @classmethod
    def under(cls, root: str | Path) -> StudyPaths:
        root = Path(root)
        return cls(
            root=root,
            trials_dir=root / "trials",
            survey_table=root / "survey.csv",
            imagery_dir=root / "imagery",
            landcover_dir=root / "truth" / "landcover",
            unit_truth=root / "truth" / "units.parquet",
            wealth_truth=root / "truth" / "wealth.tif",
            wealth_response=root / "truth" / "wealth_response.json",
            post_treatment=root / "truth" / "post_treatment" / "scenes.json",
        )

    def manifest(self) -> StudyManifest:
        """The study's inputs and truth as absolute paths, readable from any working directory."""
        truth = StudyTruth(
            units=self.unit_truth,
            landcover=self.landcover_dir,
            wealth=self.wealth_truth,
            wealth_response=self.wealth_response,
            post_treatment=self.post_treatment,
        )
        return StudyManifest.create("demo", self.trials_dir, self.imagery_dir, self.survey_table, truth)

    def trial_table(self, name: str) -> Path:
        """The table of one simulated trial (``SimulationConfig.trials``)."""
        return self.trials_dir / f"{name}.csv"


def gaussian_field(shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance random field with correlation length ``scale`` pixels."""
    field = rng.standard_normal(shape)
    _gaussian_filter(field, scale)
    field -= field.mean()
    field /= field.std()
    return field


def _gaussian_filter(field: np.ndarray, sigma: float) -> np.ndarray:
    """``ndimage.gaussian_filter(field, sigma, mode="wrap")`` in place: a large region's fields are a GB each."""
    return _filter_lines(field, functools.partial(ndimage.gaussian_filter1d, sigma=sigma, mode="wrap"))


def _filter_lines(image: np.ndarray, filter1d: Callable[..., np.ndarray]) -> np.ndarray:
    """A separable filter applied to a 2-D ``image`` in place, axis by axis as scipy's n-d filters do,
    on every core: scipy filters one line at a time without the GIL, so each axis's pass is split into
    blocks of whole lines, one per thread, and gives the same numbers as one call."""
    workers = min(os.cpu_count() or 1, 8)
    for axis in (0, 1):
        edges = np.linspace(0, image.shape[1 - axis], workers + 1).astype(int)
        blocks = [image[:, a:b] if axis == 0 else image[a:b] for a, b in itertools.pairwise(edges) if b > a]
        with ThreadPoolExecutor(len(blocks)) as pool:
            list(pool.map(lambda block, axis=axis: filter1d(block, axis=axis, output=block), blocks))
    return image


def _rate(top: float, field: np.ndarray) -> np.ndarray:
    """``top / (1 + exp(-2 field))`` as float32, computed in ``field``'s memory."""
    np.multiply(field, -2, out=field)
    np.exp(field, out=field)
    field += 1
    np.divide(top, field, out=field)
    return field.astype(np.float32)


def _quantile_threshold(field: np.ndarray, share: float) -> float:
    return float(np.quantile(field, 1.0 - share))


class Landscape:
    """Land cover over time from latent fields; ``classes(t)`` is the WorldCover map at date t.

    The thresholded fields stay float64 (rounding them flips a pixel of the demo); the rates are
    float32, promoted when used."""

    def __init__(self, cfg: SimulationConfig, rng: np.random.Generator):
        shape = (cfg.region_px, cfg.region_px)
        self.n_dates = cfg.n_dates
        self.moisture = gaussian_field(shape, 40, rng)
        self.human = gaussian_field(shape, 25, rng)
        self.human += 0.3 * gaussian_field(shape, 4, rng)
        self.vegetation = gaussian_field(shape, 20, rng)
        self.soil = gaussian_field(shape, 15, rng)
        # Smooth, region-varying rates of each change process, in units of field sd per sequence.
        self.urban_rate = _rate(0.9, gaussian_field(shape, 150, rng))
        self.crop_rate = _rate(1.2, gaussian_field(shape, 150, rng))
        self.loss_rate = _rate(1.2, gaussian_field(shape, 150, rng))
        self.t_water = _quantile_threshold(self.moisture, 0.04)
        self.t_wet = _quantile_threshold(self.moisture, 0.07)
        self.t_built = _quantile_threshold(self.human, 0.05)
        self.t_crop = _quantile_threshold(self.human, 0.35)
        self.t_tree = _quantile_threshold(self.vegetation, 0.45)

    def classes(self, t: int) -> np.ndarray:
        """The map at date t, ``STRIP_PX`` rows at a time (the float64 temporaries stay strip-sized)."""
        out = np.empty(self.human.shape, dtype=np.uint8)
        for row0 in range(0, out.shape[0], STRIP_PX):
            rows = slice(row0, row0 + STRIP_PX)
            out[rows] = self._classes(t, rows)
        return out

    def _classes(self, t: int, rows: slice) -> np.ndarray:
        progress = np.float64(t / max(self.n_dates - 1, 1))
        human, soil, moisture = self.human[rows], self.soil[rows], self.moisture[rows]
        built = human > self.t_built - self.urban_rate[rows] * progress
        crop = human > self.t_crop - self.crop_rate[rows] * progress
        tree = self.vegetation[rows] > self.t_tree + self.loss_rate[rows] * progress
        out = np.where(soil > 1.2, 60, np.where(soil > 0.0, 30, 20)).astype(np.uint8)
        out[tree] = 10
        out[crop] = 40
        out[built] = 50
        out[moisture > self.t_wet] = 90
        out[moisture > self.t_water] = 80
        return out


def land_cover_sequence(cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """(dates, H, W) uint8 WorldCover maps of a new ``Landscape``, whose latent fields (seven
    region-sized arrays) are let go once the maps are drawn."""
    landscape = Landscape(cfg, rng)
    maps = np.empty((cfg.n_dates, cfg.region_px, cfg.region_px), dtype=np.uint8)
    for t in range(cfg.n_dates):
        maps[t] = landscape.classes(t)
    return maps


class NeighbourhoodFractions(Mapping[int, np.ndarray]):
    """Share of each class in the ``size`` x ``size`` window around every pixel, computed when asked
    for and not kept: a large region never holds all sixteen layers (first and last date) at once."""

    def __init__(self, labels: np.ndarray, classes: tuple[int, ...], size: int):
        self.labels, self.classes, self.size = labels, classes, size

    def __getitem__(self, code: int) -> np.ndarray:
        if code not in self.classes:
            raise KeyError(code)
        share = (self.labels == code).astype(np.float32)
        return _filter_lines(share, functools.partial(ndimage.uniform_filter1d, size=self.size, mode="nearest"))

    def __iter__(self) -> Iterator[int]:
        return iter(self.classes)

    def __len__(self) -> int:
        return len(self.classes)


def _zscore(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return (values - reference.mean()) / (reference.std() + 1e-9)


def _date_gain(rng: np.random.Generator) -> np.ndarray:
    """A date's gain per band (float32), the first draw of its scene."""
    return (1.0 + 0.04 * rng.standard_normal(len(BANDS))).astype(np.float32)


def _noise_strips(rng: np.random.Generator, shape: tuple[int, int]) -> Iterator[tuple[slice, np.ndarray]]:
    """(rows, bands x rows x W noise) of a ``shape`` scene, ``STRIP_PX`` rows at a time, drawn in the
    order every scene draws it."""
    for row0 in range(0, shape[0], STRIP_PX):
        rows = slice(row0, min(row0 + STRIP_PX, shape[0]))
        yield rows, 0.008 * rng.standard_normal((len(BANDS), rows.stop - row0, shape[1])).astype(np.float32)


def _reflectance(labels: np.ndarray, texture: np.ndarray, gain: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Class spectra x texture x the date's gain + noise, clipped to [0, 1], bands first, for pixels
    laid out as ``labels`` (a strip or a list of pixels): elementwise, so any layout gives the same
    numbers for the same pixel."""
    refl = np.moveaxis(_SPECTRA_LUT[labels], -1, 0) * (1.0 + 0.08 * texture)[None] * gain.reshape((-1,) + (1,) * labels.ndim)
    refl += noise
    return np.clip(refl, 0.0, 1.0)


def reflectance_strips(labels: np.ndarray, texture: np.ndarray, rng: np.random.Generator) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, (6, rows, W) reflectance) for one date, ``STRIP_PX`` rows at a time, the noise
    drawn strip by strip as the strips are consumed."""
    gain = _date_gain(rng)
    for rows, noise in _noise_strips(rng, labels.shape):
        yield rows.start, _reflectance(labels[rows], texture[rows], gain, noise)


def noise_at(where: np.ndarray, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """A date's gain and its noise at the pixels ``where`` (bands x pixels, row-major order), its
    generator replayed from ``state`` as ``reflectance_strips`` draws it: a scene changed at those
    pixels only is computed there, bit for bit as a whole-scene replay."""
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = state
    gain = _date_gain(rng)
    return gain, np.concatenate([noise[:, where[rows]] for rows, noise in _noise_strips(rng, where.shape)], axis=1)


def _invalid_mask(shape: tuple[int, int], cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    """Nodata swath edge on one side plus cloud blobs (cloud-masked pixels are written as nodata)."""
    rows, cols = np.ogrid[0 : shape[0], 0 : shape[1]]
    slope = rng.uniform(-0.3, 0.3)
    width = rng.uniform(0.0, 0.06) * shape[1]
    edge = cols < width + slope * (rows - shape[0] / 2) if rng.random() < 0.5 else cols > shape[1] - width + slope * (rows - shape[0] / 2)
    cloud_field = gaussian_field(shape, 8, rng)
    clouds = cloud_field > np.quantile(cloud_field, 1.0 - cfg.cloud_fraction * rng.uniform(0.3, 1.7))
    return edge | clouds


def _geotiff_profile(cfg: SimulationConfig, count: int, dtype: str, nodata: float | int | None) -> dict:
    return {
        "driver": "GTiff",
        "width": cfg.region_px,
        "height": cfg.region_px,
        "count": count,
        "dtype": dtype,
        "crs": cfg.crs,
        "transform": from_origin(*cfg.origin, cfg.pixel_size, cfg.pixel_size),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        # ZSTD level 1: a 3,264 px scene writes in 0.26 s vs DEFLATE's 1.42 s, reads in about the same
        # time (0.41 vs 0.36 s) and is smaller (82 vs 85 MB); a large region writes 47 scenes.
        "compress": "zstd",
        "zstd_level": 1,
        "predictor": 2,
        "interleave": "pixel",
        "num_threads": "all_cpus",
    }


def scene_dn(reflectance: np.ndarray) -> np.ndarray:
    """Reflectance as int16 digital numbers scaled by 1e-4 (like Landsat/Sentinel-2 L2 products)."""
    return np.round(reflectance / REFLECTANCE_SCALE).astype(np.int16)


def write_scene(path: Path, strips: Iterable[tuple[int, np.ndarray]], invalid: np.ndarray, cfg: SimulationConfig, date: str) -> None:
    """Write one date's (first row, int16 digital numbers) strips (``scene_dn``) into its tiles,
    the ``invalid`` pixels as nodata."""
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **_geotiff_profile(cfg, len(BANDS), "int16", REFLECTANCE_NODATA)) as dst:
        for row0, dn in strips:
            dn[:, invalid[row0 : row0 + dn.shape[1]]] = REFLECTANCE_NODATA
            dst.write(dn, window=Window(0, row0, dn.shape[2], dn.shape[1]))
        dst.descriptions = BANDS
        dst.scales = (REFLECTANCE_SCALE,) * len(BANDS)
        dst.update_tags(ACQUISITION_DATE=date)


def write_landcover(path: Path, labels: np.ndarray, cfg: SimulationConfig) -> None:
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **_geotiff_profile(cfg, 1, "uint8", 0)) as dst:
        dst.write(labels, 1)
        dst.write_colormap(1, colormap())


def _sample_pixels(labels: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Unit locations, denser in cropland and settlements, none in open water."""
    weights = np.zeros(256)
    for code, w in UNIT_WEIGHT.items():
        weights[code] = w
    p = weights[labels].ravel()
    idx = rng.choice(p.size, size=n, replace=False, p=p / p.sum())
    return np.divmod(idx, labels.shape[1])


def _pixel_to_lonlat(rows: np.ndarray, cols: np.ndarray, cfg: SimulationConfig, rng: np.random.Generator):
    x = cfg.origin[0] + (cols + rng.uniform(0.1, 0.9, cols.size)) * cfg.pixel_size
    y = cfg.origin[1] - (rows + rng.uniform(0.1, 0.9, rows.size)) * cfg.pixel_size
    lon, lat = Transformer.from_crs(cfg.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def _covariates(n: int, built: np.ndarray, built_ref: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    zb = _zscore(built, built_ref)
    return pd.DataFrame(
        {
            "age_head": np.clip(rng.normal(40, 12, n), 18, 90).round(),
            "female_head": rng.binomial(1, 0.3, n),
            "hh_size": rng.poisson(4, n) + 1,
            "education_years": np.clip(rng.normal(6 + 1.0 * zb, 3), 0, 18).round(),
            "baseline_assets": 0.6 * zb + rng.standard_normal(n),
        }
    )


def _assign(n: int, strata: np.ndarray, cfg: SimulationConfig, rng: np.random.Generator) -> np.ndarray:
    if not cfg.stratified:
        return rng.binomial(1, cfg.treat_prob, n)
    treat = np.zeros(n, dtype=int)
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        k = int(round(cfg.treat_prob * idx.size))
        treat[rng.choice(idx, size=k, replace=False)] = 1
    return treat


def _heterogeneity_weights(kind: Heterogeneity) -> tuple[float, float, float]:
    """(static, change, covariate) weights of the CATE's heterogeneous part."""
    return {"both": (0.6, 0.6, 0.5), "static": (1.0, 0.0, 0.5), "change": (0.0, 1.0, 0.5), "none": (0.0, 0.0, 0.0)}[kind]


def true_cate(landscape_terms: dict[str, np.ndarray], covariates: pd.DataFrame, cfg: SimulationConfig) -> np.ndarray:
    """The planted CATE: level (cropland at baseline), change (urban growth minus forest loss), covariate."""
    w_static, w_change, w_cov = _heterogeneity_weights(cfg.heterogeneity)
    static = landscape_terms["crop_level"]
    change = (landscape_terms["urban_growth"] - landscape_terms["forest_loss"]) / np.sqrt(2)
    cov = (covariates["female_head"].to_numpy() - 0.3) / np.sqrt(0.21)
    h = w_static * static + w_change * change + w_cov * cov
    norm = np.sqrt(w_static**2 + w_change**2 + w_cov**2) or 1.0
    return cfg.ate + cfg.effect_strength * h / norm


def _landscape_terms(first: Mapping, last: Mapping, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
    """Standardized landscape drivers at the given pixels (z-scored against the whole region)."""
    growth = last[50] - first[50]
    loss = first[10] - last[10]
    return {
        "crop_level": _zscore(last[40][rows, cols], last[40]),
        "urban_growth": _zscore(growth[rows, cols], growth),
        "forest_loss": _zscore(loss[rows, cols], loss),
    }


def wealth_surface(first: Mapping, last: Mapping, smooth: np.ndarray) -> np.ndarray:
    """True wealth index everywhere: settlements, growth and cropland raise it, bare land lowers it."""
    growth = last[50] - first[50]
    w = 1.0 * _zscore(last[50], last[50]) + 0.5 * _zscore(growth, growth) + 0.4 * _zscore(last[40], last[40])
    w += -0.3 * _zscore(last[60], last[60]) + 0.3 * smooth
    return ((w - w.mean()) / w.std()).astype(np.float32)


def wealth_response(fractions: Mapping[int, np.ndarray], wealth: np.ndarray, step: int = 4) -> dict[int, float]:
    """How land cover differs with wealth across the region: the OLS slope of each class's chip-scale
    share on the wealth index (every ``step``-th pixel). Richer places have more built-up land and
    cropland; a treated unit's wealth gain changes its surroundings by these slopes times the gain
    (``models.debiasing.imagery_study``)."""
    w = wealth[::step, ::step].ravel().astype(float)
    w = w - w.mean()
    return {int(c): float(np.dot(f[::step, ::step].ravel() - f[::step, ::step].mean(), w) / np.dot(w, w)) for c, f in fractions.items()}


def treatment_gains(share_per_wealth: dict[int, float], effect: float) -> dict[int, float]:
    """Share of a place's surroundings that turns into each class whose share grows with wealth, for
    a wealth change ``effect`` (scaled down if it would exceed the whole window)."""
    gains = {c: effect * s for c, s in share_per_wealth.items() if effect * s > 0 and c in SPECTRA}
    total = sum(gains.values())
    return {c: g / max(total, 1.0) for c, g in gains.items()}


def switch_land_cover(labels: np.ndarray, where: np.ndarray, u: np.ndarray, gains: dict[int, float]) -> np.ndarray:
    """``labels`` with pixels in ``where`` switched to each gaining class: a pixel whose uniform draw
    ``u`` falls in the class's slice of [0, 1). One draw per pixel for every effect, so overlapping
    windows agree and a larger change contains a smaller one of the same sign."""
    out, start = labels.copy(), 0.0
    for code, share in gains.items():
        out[where & (u >= start) & (u < start + share)] = code
        start += share
    return out


def place_windows(shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Mask of the ``size`` x ``size`` windows around the given pixels (chip convention: the place's
    pixel at index ``size // 2``)."""
    mask = np.zeros(shape, dtype=bool)
    for r, c in zip(rows - size // 2, cols - size // 2, strict=True):
        mask[max(r, 0) : max(r + size, 0), max(c, 0) : max(c + size, 0)] = True
    return mask


def simulate_study(cfg: SimulationConfig, root: str | Path) -> StudyPaths:
    """Write a complete demo study under ``root`` and return its paths."""
    paths = StudyPaths.under(root)
    rng = np.random.default_rng(cfg.seed)
    land_cover = land_cover_sequence(cfg, rng)
    texture = gaussian_field((cfg.region_px,) * 2, 2, rng).astype(np.float32)
    dates = [f"{cfg.start_year + t}-07-15" for t in range(cfg.n_dates)]
    paths.imagery_dir.mkdir(parents=True, exist_ok=True)
    paths.landcover_dir.mkdir(parents=True, exist_ok=True)
    replay = {}  # per date: the generator state and invalid mask, replayed for the post-treatment scenes
    for t, date in enumerate(dates):
        labels = land_cover[t]
        write_landcover(paths.landcover_dir / f"landcover_{date}.tif", labels, cfg)
        state = copy.deepcopy(rng.bit_generator.state)
        strips = [(row0, scene_dn(refl)) for row0, refl in reflectance_strips(labels, texture, rng)]  # int16: a float scene's fifth
        invalid = _invalid_mask(labels.shape, cfg, rng)  # drawn after the noise
        write_scene(paths.imagery_dir / f"scene_{date}.tif", strips, invalid, cfg, date)
        replay[t] = (state, invalid)
        del strips
    classes, labels_first, labels_last = tuple(SPECTRA), land_cover[0], land_cover[-1]
    first = NeighbourhoodFractions(labels_first, classes, cfg.chip_size)
    last = NeighbourhoodFractions(labels_last, classes, cfg.chip_size)
    wealth = wealth_surface(first, last, gaussian_field(labels_last.shape, 60, rng))
    _write_float_raster(paths.wealth_truth, wealth, cfg)
    response = wealth_response(last, wealth)
    write_json({"share_per_wealth": response}, paths.wealth_response)
    _write_units(paths, cfg, labels_last, first, last, wealth, rng)
    survey_rows, survey_cols = _write_survey(paths, cfg, labels_last, wealth, rng)
    places = PostTreatmentPlaces(survey_rows, survey_cols, cfg.chip_size, labels_last.shape)
    _write_post_treatment(paths, cfg, land_cover, places, response, texture, replay, dates)
    write_json({"config": dataclasses.asdict(cfg), "dates": dates, "bands": BANDS}, paths.root / "simulation.json")
    return paths


@dataclass(frozen=True)
class PostTreatmentPlaces:
    """The surveyed places whose surroundings a treatment changes: their pixels and chip windows."""

    rows: np.ndarray
    cols: np.ndarray
    size: int
    shape: tuple[int, int]

    @property
    def windows(self) -> np.ndarray:
        return place_windows(self.shape, self.rows, self.cols, self.size)

    def order(self, pattern: ChangePattern, seed: int) -> np.ndarray:
        """Per pixel of the places' windows, a value in [0, 1]: pixels below a share s switch when a
        change of share s happens (``switch_land_cover``), so each pattern switches about s of a
        window. Outside the windows nothing switches and the value is not meaningful.

        scattered: independent uniforms; patchy: a smooth field (3 px) mapped to uniforms; ring: the
        annulus area between an unchanged core (a sixth of the window wide) and the distance to the
        nearest place, as a share of the window, so change spreads outward from the core. One
        region-sized float64 array at most besides the result: a large region's is a GB."""
        rng = np.random.default_rng([seed, 1])  # own stream: the observed study stays as it was
        if pattern == "scattered":
            return rng.random(self.shape)  # the stream's first draws, as before patterns existed
        if pattern == "patchy":
            rng.bit_generator.advance(self.shape[0] * self.shape[1])  # skip the scattered draws: one output per uniform
            field = gaussian_field(self.shape, 3, rng)
            return special.ndtr(field, out=field)  # the standard normal cdf, in place
        return self._ring()

    def _ring(self) -> np.ndarray:
        """The ring order inside the windows (1, never switching, elsewhere), from each window pixel's
        exact Euclidean distance to the nearest place (a k-d tree over the places)."""
        places = np.unique(np.column_stack([np.clip(self.rows, 0, self.shape[0] - 1), np.clip(self.cols, 0, self.shape[1] - 1)]), axis=0)
        inside = np.nonzero(self.windows)
        distance, _ = spatial.cKDTree(places).query(np.column_stack(inside))
        half = self.size / 2
        core = half / 3
        out = np.ones(self.shape)
        out[inside] = np.where(distance < core, 1.0, np.clip(np.pi * (distance**2 - core**2) / (4 * half**2), 0.0, 1.0))
        return out


def _write_post_treatment(
    paths: StudyPaths,
    cfg: SimulationConfig,
    land_cover: np.ndarray,
    places: PostTreatmentPlaces,
    response: dict[int, float],
    texture: np.ndarray,
    replay: dict[int, tuple[dict, np.ndarray]],
    dates: list[str],
) -> None:
    """For each change setting and effect, the scenes of the setting's dates with every surveyed
    place's surroundings changed as a wealth change of that size changes places
    (``treatment_gains``), laid out by the setting's pattern; and a JSON index of them.

    A scene is a VRT (``scene_<date>.vrt``) of the observed scene under an overlay
    (``changes/scene_<date>.tif``) that holds the places' windows only, nodata elsewhere: a few
    percent of a scene's size, however large the region."""
    paths.post_treatment.parent.mkdir(parents=True, exist_ok=True)
    windows, index = places.windows, {}
    texture_in, noise = texture[windows], {}  # per date: its gain and noise in the windows, drawn once
    for setting in cfg.change_settings if cfg.post_treatment_effects else ():
        order = places.order(setting.pattern, cfg.seed)[windows]
        post = range(cfg.n_dates - setting.dates, cfg.n_dates)
        observed = {t: land_cover[t][windows] for t in post}
        scenes = {}
        for effect in cfg.post_treatment_effects:
            folder = paths.post_treatment.parent / setting.slug / f"effect_{effect:+.2f}"
            folder.mkdir(parents=True, exist_ok=True)
            gains = treatment_gains(response, effect)
            for t in post:
                state, invalid = replay[t]
                if t not in noise:
                    noise[t] = noise_at(windows, state)
                changed = switch_land_cover(observed[t], np.ones_like(order, dtype=bool), order, gains)
                dn = scene_dn(_reflectance(changed, texture_in, *noise[t]))
                overlay = folder / "changes" / f"scene_{dates[t]}.tif"
                overlay.parent.mkdir(exist_ok=True)
                write_scene(overlay, _scattered_strips(windows, dn, REFLECTANCE_NODATA), invalid | ~windows, cfg, dates[t])
                scene = paths.imagery_dir / f"scene_{dates[t]}.tif"
                write_mosaic(
                    [[(str(scene), b), (str(overlay), b)] for b in range(1, len(BANDS) + 1)],
                    folder / f"scene_{dates[t]}.vrt",
                    relative=True,
                )
            scenes[f"{effect:+.2f}"] = str(folder.relative_to(paths.post_treatment.parent))  # the study may move
        index[setting.name] = {"pattern": setting.pattern, "dates": [dates[t] for t in post], "scenes": scenes}
    write_json({"window_px": cfg.chip_size, "settings": index}, paths.post_treatment)


def _scattered_strips(where: np.ndarray, values: np.ndarray, fill: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, bands x rows x W strip) of ``values`` given at the pixels ``where`` (bands x
    pixels, row-major), ``fill`` elsewhere, ``STRIP_PX`` rows at a time."""
    start = 0
    for row0 in range(0, where.shape[0], STRIP_PX):
        inside = where[row0 : row0 + STRIP_PX]
        strip = np.full((values.shape[0], *inside.shape), fill, dtype=values.dtype)
        stop = start + int(np.count_nonzero(inside))
        strip[:, inside] = values[:, start:stop]
        start = stop
        yield row0, strip


def _write_float_raster(path: Path, values: np.ndarray, cfg: SimulationConfig) -> None:
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **_geotiff_profile(cfg, 1, "float32", np.nan)) as dst:
        dst.write(values, 1)


def _write_units(paths: StudyPaths, cfg, labels_last, first, last, wealth, rng) -> None:
    """``n_units`` per trial, drawn over the whole region and dealt to the trials by column (trial k
    gets the k-th strip, west to east); each trial randomizes its own units."""
    n = cfg.n_units * len(cfg.trials)
    rows, cols = _sample_pixels(labels_last, n, rng)
    lon, lat = _pixel_to_lonlat(rows, cols, cfg, rng)
    built = last[50]
    cov = _covariates(n, built[rows, cols], built, rng)
    terms = _landscape_terms(first, last, rows, cols)
    tau = true_cate(terms, cov, cfg)
    mu0 = 2.0 + 0.8 * terms["crop_level"] + 0.5 * cov["baseline_assets"].to_numpy() + 0.05 * (cov["education_years"].to_numpy() - 6)
    strata = 2 * (rows >= cfg.region_px // 2) + (cols >= cfg.region_px // 2)
    trial = np.empty(n, dtype=np.int64)
    trial[np.argsort(cols, kind="stable")] = np.arange(n) // cfg.n_units
    treat = np.zeros(n, dtype=int)
    for k in range(len(cfg.trials)):
        treat[trial == k] = _assign(cfg.n_units, strata[trial == k], cfg, rng)
    y = mu0 + treat * tau + cfg.noise * rng.standard_normal(n)
    unit_id = np.array([f"U{i:06d}" for i in range(n)])
    rct = pd.DataFrame(
        {
            "unit_id": unit_id,
            "lon": lon,
            "lat": lat,
            "treatment": treat,
            "outcome": y,
            "stratum": strata,
            "assignment_probability": cfg.treat_prob,
        }
    )
    rct = pd.concat([rct, cov], axis=1)
    names = np.asarray(cfg.trials)[trial]
    truth = pd.DataFrame(
        {
            "unit_id": unit_id,
            "trial": names,
            "tau": tau,
            "mu0": mu0,
            "mu1": mu0 + tau,
            "wealth": wealth[rows, cols],
            "row": rows,
            "col": cols,
            **terms,
        }
    )
    for code in SPECTRA:
        truth[f"frac_{code}_first"] = first[code][rows, cols]
        truth[f"frac_{code}_last"] = last[code][rows, cols]
    paths.trials_dir.mkdir(parents=True, exist_ok=True)
    for name in cfg.trials:
        with atomic_path(paths.trial_table(name)) as tmp:
            rct[names == name].to_csv(tmp, index=False)
    with atomic_path(paths.unit_truth) as tmp:
        truth.to_parquet(tmp, index=False)


def _write_survey(paths: StudyPaths, cfg, labels_last, wealth, rng) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = _sample_pixels(labels_last, cfg.n_survey, rng)
    lon, lat = _pixel_to_lonlat(rows, cols, cfg, rng)
    survey = pd.DataFrame(
        {
            "survey_id": [f"S{i:06d}" for i in range(cfg.n_survey)],
            "lon": lon,
            "lat": lat,
            "wealth": wealth[rows, cols] + 0.3 * rng.standard_normal(cfg.n_survey),
        }
    )
    with atomic_path(paths.survey_table) as tmp:
        survey.to_csv(tmp, index=False)
    return rows, cols
