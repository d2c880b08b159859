"""Helpers for graph-backed assets (an asset computed by several steps: plan, map, assemble)."""

import dagster as dg


def shared_config(config_type: type[dg.Config], ops: tuple[str, ...]) -> dg.ConfigMapping:
    """One ``config_type`` for the whole graph, handed to each of its ``ops``: the Launchpad and
    run config see the asset's config, as for a single-step asset."""

    def mapping(config) -> dict:
        values = {"config": config.model_dump() if isinstance(config, dg.Config) else dict(config)}
        return {op: values for op in ops}

    mapping.__annotations__ = {"config": config_type, "return": dict}
    mapping.__doc__ = f"One {config_type.__name__} for every op of the graph."
    return dg.config_mapping(mapping)
