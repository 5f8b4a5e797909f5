"""The noise and the classic baselines of one observation, each computed once.

A run needs the Stokes noise (for the regularised WFA's weights and the sigma
maps), the pixel-wise WFA (a warm start, the WFA_* maps, the sigma maps) and
the regularised WFA (the smoothness weights of the neural field, a warm
start, the REG_* maps). :class:`Baselines` makes each on first use and hands
the same object to every later user, so a run solves the regularised WFA and
estimates the noise once, whoever asks first.

A failure (data that cannot give a noise estimate, an image too small for
the regularised WFA) is remembered and raised again to each caller, so each
can decide whether it is fatal (the smoothness weights) or only drops one
output (the REG_* maps).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

from hashwfa.errors import HashwfaError
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.baselines.regularized import RegularizedResult, regularized_wfa
from hashwfa.wfa.observation.noise import StokesNoise, resolve_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.physics.weak_field import CORE_CUTOFF, DEFAULT_QU_FORM

__all__ = ["Baselines"]


class Baselines:
    """The noise, pixel-wise WFA and regularised WFA of one observation, made on first use.

    Args:
        observation: the data (a lazy cube is read frame by frame, once per product).
        core_cutoff: |lambda - lambda0| [A] inside which the wing form's
            1/(lambda - lambda0) is 0 (as for the pixel-wise WFA).
        qu_form: the Q/U form of the WFA.
        given_noise: the run's ``data.noise`` (a :class:`StokesNoise`), or
            None to estimate the noise from the data.
    """

    def __init__(self, observation: Observation, core_cutoff: float = CORE_CUTOFF,
                 qu_form: str = DEFAULT_QU_FORM, given_noise: Optional[StokesNoise] = None) -> None:
        self.observation = observation
        self.core_cutoff = core_cutoff
        self.qu_form = qu_form
        self.given_noise = given_noise
        self._made: Dict[str, Any] = {}

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._made:
            try:
                self._made[name] = make()
            except HashwfaError as exc:
                self._made[name] = exc
        made = self._made[name]
        if isinstance(made, HashwfaError):
            raise HashwfaError(str(made))
        return made

    @property
    def noise(self) -> StokesNoise:
        """The Stokes noise: ``given_noise``, else estimated from the data.

        Raises:
            HashwfaError: when none is given and the data cannot give an estimate.
        """
        if isinstance(self.given_noise, StokesNoise):  # checked against the data when it was made
            return self.given_noise
        return self._once("noise", lambda: resolve_noise(self.observation, self.given_noise))

    @property
    def pixelwise(self) -> FieldMaps:
        """The pixel-wise WFA's maps (:func:`~hashwfa.wfa.baselines.pixelwise.pixel_wfa`)."""
        return self._once("pixelwise", lambda: pixel_wfa(self.observation, core_cutoff=self.core_cutoff,
                                                          qu_form=self.qu_form))

    @property
    def regularized(self) -> RegularizedResult:
        """The regularised WFA with its weights chosen by the default rules (:data:`~hashwfa.wfa.baselines.regularized.DEFAULT_RULE`) from :attr:`noise`.

        Raises:
            HashwfaError: when it cannot be made (no noise, an image under 3 x 3 pixels).
        """
        return self._once("regularized", lambda: regularized_wfa(
            self.observation, noise=self.noise, core_cutoff=self.core_cutoff, qu_form=self.qu_form))
