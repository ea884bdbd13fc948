"""Fixed-point formats of a target: the ``[quantization]`` table of its profile."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nirbridge.config import Table
from nirbridge.errors import ProfileError
from nirbridge.neurons import default_frac_bits
from nirbridge.profile.targets import Profile, Quantization, load_profile, quantization_from_table

#: Fractional bits of the state per neuron format key (the ``[quantization.frac_bits]``
#: table), as the registered neurons declare them.
DEFAULT_FRAC_BITS: dict[str, int] = default_frac_bits()

REQUIRED_KEYS: tuple[str, ...] = (
    "weight_bits", "weight_exp_min", "weight_exp_max", "state_bits", "decay_bits",
    "frac_bits", "lut_step_log2", "lut_min", "lut_max",
)


@dataclass(frozen=True)
class QuantConfig:
    """Fixed-point formats of a target (the ``[quantization]`` table of its profile).

    ``weight_bits``: signed weight mantissa width; ``weight_exp_min``/``max``: range of
    the per-layer exponent; ``state_bits``: width of every state (saturating);
    ``decay_bits``: fractional bits of decays and other constant multipliers;
    ``frac_bits``: minimum fractional bits of the state per neuron type;
    ``lut_step_log2``, ``lut_min``, ``lut_max``: grid of the tanh/σ tables.
    Not from the profile (options of this pass): ``input_frac_bits`` (fractional bits of
    graded network inputs; 0 for spikes/integers), ``input_bits`` (their saturation
    width), ``input_max`` (their expected magnitude, for range estimates), ``headroom``
    (range margin), ``conv_weight_exp`` (False pins the exponent of Conv layers to 0, as
    Lava's Conv ignores ``weight_exp``).
    """

    weight_bits: int = 8
    weight_exp_min: int = -8
    weight_exp_max: int = 7
    state_bits: int = 24
    decay_bits: int = 12
    frac_bits: Mapping[str, int] = field(default_factory=default_frac_bits)
    lut_step_log2: int = -8
    lut_min: float = -8.0
    lut_max: float = 8.0
    input_frac_bits: int = 0
    input_bits: int = 16
    input_max: float = 1.0
    headroom: float = 2.0
    conv_weight_exp: bool = True

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ProfileError:
            return ProfileError(f"quantization.{name} = {getattr(self, name)!r}: {why}")

        if not 2 <= self.weight_bits <= 16:
            raise bad("weight_bits", "must be an integer in [2, 16]")
        if self.weight_exp_min > self.weight_exp_max:
            raise bad("weight_exp_min", f"exceeds weight_exp_max = {self.weight_exp_max}")
        if not 8 <= self.state_bits <= 32:
            raise bad("state_bits", "must be an integer in [8, 32] (int64 products)")
        if not 4 <= self.decay_bits <= 16:
            raise bad("decay_bits", "must be an integer in [4, 16]")
        if not self.lut_max > self.lut_min:
            raise bad("lut_max", f"must exceed lut_min = {self.lut_min}")
        if not -16 <= self.lut_step_log2 <= 0:
            raise bad("lut_step_log2", "must be an integer in [-16, 0]")
        for key, val in self.frac_bits.items():
            if not isinstance(val, int) or isinstance(val, bool) or not 0 <= val < \
                    self.state_bits - 1:
                raise ProfileError(f"quantization.frac_bits.{key} = {val!r}: must be an "
                                   f"integer in [0, {self.state_bits - 2}]")
        if not self.headroom >= 1.0:
            raise bad("headroom", "must be ≥ 1")

    def frac_of(self, key: str, node_name: str) -> int:
        """Fractional bits for neuron type ``key`` (``ProfileError`` if the table lacks it)."""
        try:
            return int(self.frac_bits[key])
        except KeyError:
            raise ProfileError(f"quantization.frac_bits has no entry '{key}' (needed by node "
                               f"'{node_name}'); add it to the profile") from None

    @classmethod
    def from_profile(cls, profile: Profile | Quantization | Mapping[str, Any] | str | Path,
                     **options: Any) -> QuantConfig:
        """Read the ``[quantization]`` table of a target profile.

        ``profile`` is the name of a shipped profile (``"loihi2"``) or a path to a
        ``.toml`` file (loaded and schema-checked by
        :func:`nirbridge.profile.load_profile`), a loaded :class:`~nirbridge.profile.Profile`
        or its :class:`~nirbridge.profile.Quantization`, or a parsed profile (a dict with a
        ``quantization`` table, or that table itself). A dict may also hold the options
        below, and give ``frac_bits`` as one integer for every neuron type. ``options`` set
        the fields that are not in the profile (``input_frac_bits`` …). A missing or
        mistyped field raises :class:`ProfileError` naming it (``field
        'quantization.weight_bits': …``), as does a neuron type missing from ``frac_bits``.
        """
        if isinstance(profile, (str, Path)):
            profile = load_profile(profile)
        source: Path | None = None
        if isinstance(profile, Profile):
            if profile.quantization is None:
                raise ProfileError(f"{profile.path or profile.name}: profile has no "
                                   "[quantization] table")
            source, quant = profile.path, profile.quantization
        elif isinstance(profile, Quantization):
            quant = profile
        elif isinstance(profile, Mapping):
            quant = _quantization_of(profile.get("quantization", profile), options)
        else:
            raise ProfileError("profile has no [quantization] table")
        missing = [k for k in DEFAULT_FRAC_BITS if k not in quant.frac_bits]
        if missing:
            frac = Table(quant.frac_bits, source=source, error=ProfileError,
                         name="quantization.frac_bits")
            raise frac.fail(missing[0], "missing; give an integer (add it to "
                                        "[quantization.frac_bits])")
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProfileError(f"unknown quantization option(s) {sorted(unknown)}")
        return cls(**asdict(quant), **options)


#: Fields of :class:`QuantConfig` that a parsed ``[quantization]`` dict may hold besides
#: the profile schema's (a shipped profile holds none of them).
OPTION_KEYS: tuple[str, ...] = ("input_frac_bits", "input_bits", "input_max", "headroom",
                                "conv_weight_exp")


def _quantization_of(data: Any, options: dict[str, Any]) -> Quantization:
    """The profile schema's :class:`Quantization` of a parsed ``[quantization]`` dict; its
    option fields go into ``options`` unless already there."""
    if not isinstance(data, Mapping) or not any(k in data for k in REQUIRED_KEYS):
        raise ProfileError("profile has no [quantization] table")
    fields = dict(data)
    for key in OPTION_KEYS:
        if key in fields:
            options.setdefault(key, fields.pop(key))
    fb = fields.get("frac_bits")
    if isinstance(fb, int) and not isinstance(fb, bool):
        fields["frac_bits"] = dict.fromkeys(DEFAULT_FRAC_BITS, fb)
    return quantization_from_table(Table(fields, source=None, error=ProfileError,
                                         name="quantization"))


__all__ = ["DEFAULT_FRAC_BITS", "OPTION_KEYS", "REQUIRED_KEYS", "QuantConfig"]
