"""The study manifest: where a study's trials, imagery, survey and (simulated) truth live.

One typed contract read by every asset downstream of ``study_inputs``: absolute paths, usable
from any working directory and any worker, stored as JSON.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

StudyKind = Literal["demo", "user"]


NO_SURVEY = (
    "debiasing skipped: the study has no survey (StudySource.survey_table), so no wealth map is learned and there is "
    "nothing to debias; the trials' causal evidence does not need one"
)


@dataclasses.dataclass(frozen=True)
class StudyTruth:
    """The simulator's ground truth (all None for a real study). For evaluation and plots only."""

    units: str | None = None
    landcover: str | None = None
    wealth: str | None = None
    wealth_response: str | None = None
    post_treatment: str | None = None


@dataclasses.dataclass(frozen=True)
class StudyManifest:
    """A study's inputs: the folder of trial tables, the imagery, the survey, the truth."""

    kind: StudyKind
    trials: str
    imagery: str
    survey_table: str | None = None
    truth: StudyTruth = StudyTruth()

    @property
    def without_survey(self) -> str | None:
        """Why there is no wealth map to debias (:data:`NO_SURVEY`), or None when the study has a survey."""
        return None if self.survey_table else NO_SURVEY

    @classmethod
    def create(
        cls,
        kind: StudyKind,
        trials: str | Path,
        imagery: str | Path | None,
        survey_table: str | Path | None = None,
        truth: StudyTruth | None = None,
    ) -> StudyManifest:
        """The one constructor: every input checked to exist (named by its ``StudySource`` field)
        and made absolute; truth paths are made absolute as they are (a real study has none)."""
        if imagery is None:
            raise FileNotFoundError("StudySource.imagery must name a folder of GeoTIFFs or a catalog CSV")
        for name, value in {"trials": trials, "imagery": imagery, "survey_table": survey_table}.items():
            if value is not None and not Path(value).exists():
                raise FileNotFoundError(f"StudySource.{name} = {str(value)!r} does not exist")
        absolute = {f.name: _absolute(getattr(truth, f.name)) for f in dataclasses.fields(StudyTruth)} if truth else {}
        return cls(kind, _absolute(trials), _absolute(imagery), _absolute(survey_table), StudyTruth(**absolute))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> StudyManifest:
        """The loader: a manifest back from its JSON record (unknown keys are an error)."""
        return cls(**(record | {"truth": StudyTruth(**record.get("truth") or {})}))

    @classmethod
    def load(cls, path: str | Path) -> StudyManifest:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _absolute(path: str | Path | None) -> str | None:
    return str(Path(path).resolve()) if path is not None else None
