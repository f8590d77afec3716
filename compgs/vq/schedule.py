"""When a quantization-aware trainer fits, re-assigns or only updates its codebooks.

CompGS (Navaneet et al., ECCV 2024) quantizes from a start step on: the forward
pass sees centroids, the optimizer updates the full-precision vectors, every
step the centroids are moved to the mean of their members (cheap), every t
steps (e.g. 100) the vectors are re-assigned to their nearest centroid
(expensive), and after a freeze step the assignments stay fixed.
"""

from __future__ import annotations

import dataclasses
import enum

from compgs.errors import InputError


class QATAction(enum.Enum):
    """What a codebook does at one training step (see `Codebook.step`)."""

    OFF = "off"  # not quantizing yet: use the full-precision vectors
    FIT = "fit"  # first quantized step: k-means from scratch
    ASSIGN = "assign"  # re-assign to the nearest centroid, then update the centroids
    UPDATE = "update"  # centroids <- mean of their members; assignments unchanged


@dataclasses.dataclass(frozen=True)
class QATSchedule:
    """Step schedule of quantization-aware training.

    Attributes:
        start: first quantized step (k-means fit happens at this step).
        assign_every: re-assign every this many steps after ``start``.
        freeze: from this step on assignments stay fixed (None: never).
    """

    start: int = 0
    assign_every: int = 100
    freeze: int | None = None

    def __post_init__(self) -> None:
        for name in ("start", "assign_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(f"QATSchedule.{name} must be an int, got {value!r}")
        if self.start < 0:
            raise InputError(f"QATSchedule.start must be >= 0, got {self.start}")
        if self.assign_every < 1:
            raise InputError(f"QATSchedule.assign_every must be >= 1, got {self.assign_every}")
        if self.freeze is not None and (
            isinstance(self.freeze, bool)
            or not isinstance(self.freeze, int)
            or self.freeze < self.start
        ):
            raise InputError(
                f"QATSchedule.freeze must be None or an int >= start ({self.start}), "
                f"got {self.freeze!r}"
            )

    def step(self, i: int) -> QATAction:
        """The action for training step ``i``."""
        if i < self.start:
            return QATAction.OFF
        if i == self.start:
            return QATAction.FIT
        if self.freeze is not None and i >= self.freeze:
            return QATAction.UPDATE
        if (i - self.start) % self.assign_every == 0:
            return QATAction.ASSIGN
        return QATAction.UPDATE
