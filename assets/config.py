"""Config types shared by the asset modules.

Dagster's config system types ``Literal`` fields but not lists of them; an ``Enum`` built from the
models' own literal values gives list fields the same launch-time check (a typo is refused by the
Launchpad, not minutes into a run) without a second copy of the names.
"""

from enum import Enum

from models.cate import LEARNERS
from models.simulate import HETEROGENEITY_DRIVERS


def literal_enum(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A ``str`` Enum whose members are ``values`` (member name = value)."""
    return Enum(name, {v: v for v in values}, type=str)


LearnerName = literal_enum("LearnerName", LEARNERS)
HeterogeneityDriver = literal_enum("HeterogeneityDriver", HETEROGENEITY_DRIVERS)


def values(members) -> tuple[str, ...]:
    """Plain strings back from enum members (the models take literals)."""
    return tuple(m.value if isinstance(m, Enum) else m for m in members)
