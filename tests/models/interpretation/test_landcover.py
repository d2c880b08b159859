"""Land cover: a classifier checked on held-out spatial blocks, and the attribution of effect
heterogeneity to land cover on the simulator, where the planted drivers are known."""

import numpy as np
import pandas as pd
import pytest
import rasterio
from sklearn.linear_model import LinearRegression

from models.causal.heterogeneity import dr_scores
from models.interpretation.attribution import best_linear_projection, cate_by_quantile, land_cover_design
from models.interpretation.classifier import LandCoverClassifier, cross_validate, cv_report, spatial_folds
from models.interpretation.landcover import NODATA_CLASS, pixel_features
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
    folds = spatial_folds(rows, cols, block_px=32, folds=4)
    X, y = features[:, rows, cols].T, labels[rows, cols]
    pred = cross_validate(X, y, folds, LandCoverClassifier("forest", n_bands=len(BANDS)))
    report = cv_report(y, pred, folds)
    assert report.accuracy > 0.85 and report.confusion.to_numpy().sum() == len(y) and len(report.fold_accuracy) == 4
    assert report.per_class.set_index("class").loc["80 permanent water bodies", "recall"] > 0.9
    classifier = LandCoverClassifier("forest", n_bands=len(BANDS)).fit(X, y)
    image = classifier.predict_image(features)
    assert image.dtype == np.uint8 and (image[np.isnan(reflectance).all(axis=0)] == NODATA_CLASS).all()


def test_spatial_folds_keep_blocks_whole_and_seeds_draw_new_splits():
    rows, cols = np.mgrid[0:256, 0:256]
    folds = spatial_folds(rows.ravel(), cols.ravel(), block_px=32, folds=4).reshape(256, 256)
    blocks = folds.reshape(8, 32, 8, 32).transpose(0, 2, 1, 3).reshape(64, -1)
    assert all((b == b[0]).all() for b in blocks)
    assert np.bincount(blocks[:, 0]).tolist() == [16, 16, 16, 16]  # blocks dealt evenly
    other = spatial_folds(rows.ravel(), cols.ravel(), block_px=32, folds=4, seed=4).reshape(256, 256)
    # a new seed is a new partition, not the old one with its folds renamed
    together = pd.crosstab(folds.ravel(), other.ravel())
    assert ((together > 0).sum(axis=1) > 1).any()


def test_a_pixel_missing_one_band_is_classified_from_the_others():
    rng = np.random.default_rng(0)
    y = np.repeat([10, 80], 200)
    X = np.column_stack([rng.normal(y / 10, 1), rng.normal(-y / 10, 1), rng.normal(0, 1, 400)]).astype(np.float32)
    X[:100, 1] = np.nan  # half the forest pixels lack band 1
    model = LandCoverClassifier("logistic", n_bands=3, max_missing_bands=1).fit(X, y)
    test = np.array([[1.0, np.nan, 0.0], [8.0, np.nan, 0.0], [np.nan, np.nan, 0.0], [1.0, -1.0, 0.0]], dtype=np.float32)
    assert model.predict(test).tolist() == [10, 80, NODATA_CLASS, 10]
    features = test.T.reshape(3, 2, 2)
    used = model.bands_used(features, model.predict_image(features))
    assert used.ravel().tolist() == [0b101, 0b101, 0, 0b111]
    assert LandCoverClassifier("logistic", n_bands=3, max_missing_bands=0).fit(X, y).predict(test).tolist() == [0, 0, 0, 10]


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
