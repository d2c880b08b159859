"""eotrials science layer: plain Python (numpy, rasterio, xarray, torch, econml), no Dagster."""
