"""Config types shared by the asset modules, and the config of graph-backed assets.

Dagster's config system types ``Literal`` fields but not lists of them; an ``Enum`` built from the
models' own literal values gives list fields the same launch-time check (a typo is refused by the
Launchpad, not minutes into a run) without a second copy of the names.
"""

from enum import Enum

import dagster as dg

from models.causal.cate import LEARNERS
from models.simulation.simulator import HETEROGENEITY_DRIVERS


def literal_enum(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A ``str`` Enum whose members are ``values`` (member name = value)."""
    return Enum(name, {v: v for v in values}, type=str)


LearnerName = literal_enum("LearnerName", LEARNERS)
HeterogeneityDriver = literal_enum("HeterogeneityDriver", HETEROGENEITY_DRIVERS)


def values(members) -> tuple[str, ...]:
    """Plain strings back from enum members (the models take literals)."""
    return tuple(m.value if isinstance(m, Enum) else m for m in members)


def shared_config(config_type: type[dg.Config], ops: tuple[str, ...]) -> dg.ConfigMapping:
    """One ``config_type`` for the whole graph, handed to each of its ``ops``: the Launchpad and
    run config see the asset's config, as for a single-step asset."""

    def mapping(config) -> dict:
        op_config = {"config": config.model_dump() if isinstance(config, dg.Config) else dict(config)}
        return {op: op_config for op in ops}

    mapping.__annotations__ = {"config": config_type, "return": dict}
    mapping.__doc__ = f"One {config_type.__name__} for every op of the graph."
    return dg.config_mapping(mapping)
