"""Land cover: a classifier checked on held-out spatial blocks, and the attribution of effect
heterogeneity to land cover on the simulator, where the planted drivers are known."""

import numpy as np
import pandas as pd
import pytest
import rasterio
from sklearn.linear_model import LinearRegression

from models.causal.heterogeneity import dr_scores
from models.interpretation.attribution import best_linear_projection, cate_by_quantile, land_cover_design
from models.interpretation.landcover import NODATA_CLASS, LandCoverClassifier, accuracy_report, block_test_mask, pixel_features
from models.simulation.simulator import BANDS, COVARIATES, SimulationConfig, simulate_study


def test_classifier_is_accurate_on_held_out_blocks(small_study):
    scene = sorted(small_study.imagery_dir.glob("*.tif"))[-1]
    truth = sorted(small_study.landcover_dir.glob("*.tif"))[-1]
    with rasterio.open(scene) as src:
        reflectance = src.read(masked=True).astype(np.float32).filled(np.nan) * src.scales[0]
    with rasterio.open(truth) as src:
        labels = src.read(1)
    features = pixel_features(reflectance, list(BANDS))
    rows, cols = np.nonzero(~np.isnan(features).any(axis=0))
    test = block_test_mask(rows, cols, block_px=32)
    X, y = features[:, rows, cols].T, labels[rows, cols]
    classifier = LandCoverClassifier().fit(X[~test], y[~test])
    accuracy, per_class, confusion = accuracy_report(y[test], classifier.predict(X[test]))
    assert accuracy > 0.85 and confusion.to_numpy().sum() == test.sum()
    assert per_class.set_index("class").loc["80 permanent water bodies", "recall"] > 0.9
    image = classifier.predict_image(features)
    assert image.dtype == np.uint8 and (image[np.isnan(reflectance).any(axis=0)] == NODATA_CLASS).all()


def test_block_holdout_keeps_blocks_whole():
    rows, cols = np.mgrid[0:256, 0:256]
    test = block_test_mask(rows.ravel(), cols.ravel(), block_px=64).reshape(256, 256)
    assert 0.1 < test.mean() < 0.45
    blocks = test.reshape(4, 64, 4, 64).transpose(0, 2, 1, 3).reshape(16, -1)
    assert all(b.all() or not b.any() for b in blocks)


def _attribution(heterogeneity: str, seed: int, tmp_path) -> pd.DataFrame:
    """The BLP of DR scores (outcome models on covariates, out of fold) on true land-cover fractions."""
    cfg = SimulationConfig(
        n_units=3000, n_survey=10, n_dates=4, region_px=384, chip_size=16, heterogeneity=heterogeneity, seed=seed, trials=("trial",)
    )
    paths = simulate_study(cfg, tmp_path / heterogeneity)
    rct = pd.read_csv(paths.trial_table("trial"))
    truth = pd.read_parquet(paths.unit_truth).set_index("unit_id").loc[rct["unit_id"]]
    codes = [10, 20, 30, 40, 50, 60, 80, 90]
    first = pd.DataFrame({c: truth[f"frac_{c}_first"].to_numpy() for c in codes})
    last = pd.DataFrame({c: truth[f"frac_{c}_last"].to_numpy() for c in codes})
    design = land_cover_design(first, last, reference=30)
    # outcome models see what the images would show (the fractions) and the covariates, as the pipeline's do
    X, T, Y = np.hstack([rct[list(COVARIATES)].to_numpy(), design.to_numpy()]), rct["treatment"].to_numpy(), rct["outcome"].to_numpy()
    folds = np.arange(len(rct)) % 5
    mu0, mu1 = np.empty(len(rct)), np.empty(len(rct))
    for k in range(5):
        for arm, mu in ((0, mu0), (1, mu1)):
            fit = (folds != k) & (arm == T)
            mu[folds == k] = LinearRegression().fit(X[fit], Y[fit]).predict(X[folds == k])
    gamma = dr_scores(Y, T, mu0, mu1, rct["assignment_probability"].to_numpy())
    return best_linear_projection(gamma, design).set_index("term"), gamma, last


def test_attribution_finds_the_planted_drivers(tmp_path):
    """Planted: cropland share (+), urban growth (+), forest loss (-, i.e. + for the change in tree cover)."""
    blp, gamma, last = _attribution("both", 0, tmp_path)
    for term in ("level_40", "change_50", "change_10"):
        assert blp.loc[term, "estimate"] > 0 and blp.loc[term, "p_value"] < 0.05, term
    groups = cate_by_quantile(gamma, last[40].to_numpy())
    assert groups["estimate"].iloc[-1] > groups["estimate"].iloc[0] and groups["units"].sum() == len(gamma)


@pytest.mark.parametrize("seed", [0, 1])
def test_attribution_finds_nothing_when_nothing_was_planted(tmp_path, seed):
    blp, _, _ = _attribution("none", seed, tmp_path)
    assert blp["p_bonferroni"].min() > 0.05
