"""Fixed-point formats of a target: the ``[quantization]`` table of its profile."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nirbridge.errors import ProfileError
from nirbridge.neurons import default_frac_bits

#: Fractional bits of the state per neuron format key (the ``[quantization.frac_bits]``
#: table), as the registered neurons declare them.
DEFAULT_FRAC_BITS: dict[str, int] = default_frac_bits()

REQUIRED_KEYS: tuple[str, ...] = (
    "weight_bits", "weight_exp_min", "weight_exp_max", "state_bits", "decay_bits",
    "frac_bits", "lut_step_log2", "lut_min", "lut_max",
)

_PROFILE_DIR = Path(__file__).parent.parent / "profiles"


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
    def from_profile(cls, profile: Mapping[str, Any] | str | Path,
                     **options: Any) -> QuantConfig:
        """Read the ``[quantization]`` table of a target profile.

        ``profile`` is the parsed profile (a dict with a ``quantization`` table, or that
        table itself), a path to a ``.toml`` file, or the name of a shipped profile
        (``"loihi2"``). ``options`` set the fields that are not in the profile
        (``input_frac_bits`` …). A missing or mistyped key raises :class:`ProfileError`
        naming it.
        """
        if isinstance(profile, (str, Path)):
            profile = _load_profile(profile)
        table = profile.get("quantization", profile) if isinstance(profile, Mapping) else None
        if not isinstance(table, Mapping):
            raise ProfileError("profile has no [quantization] table")
        kw: dict[str, Any] = {}
        for key in REQUIRED_KEYS:
            if key not in table:
                raise ProfileError(f"profile field 'quantization.{key}' is missing; add it to "
                                   "the [quantization] table")
            val = table[key]
            if key == "frac_bits":
                if isinstance(val, Mapping):
                    missing = [k for k in DEFAULT_FRAC_BITS if k not in val]
                    if missing:
                        raise ProfileError(f"profile field 'quantization.frac_bits.{missing[0]}'"
                                           " is missing; add it to [quantization.frac_bits]")
                    val = {str(k): v for k, v in val.items()}
                elif isinstance(val, int) and not isinstance(val, bool):
                    val = dict.fromkeys(DEFAULT_FRAC_BITS, val)
                else:
                    raise ProfileError(f"profile field 'quantization.frac_bits' = {val!r}: "
                                       "expected a table of integers by neuron type")
            elif key in ("lut_min", "lut_max"):
                if isinstance(val, bool) or not isinstance(val, (int, float)):
                    raise ProfileError(f"profile field 'quantization.{key}' = {val!r}: "
                                       "expected a number")
                val = float(val)
            elif isinstance(val, bool) or not isinstance(val, int):
                raise ProfileError(f"profile field 'quantization.{key}' = {val!r}: expected "
                                   "an integer")
            kw[key] = val
        for key in ("input_frac_bits", "input_bits", "input_max", "headroom",
                    "conv_weight_exp"):
            if key in table and key not in options:
                options[key] = table[key]
        unknown = set(options) - set(cls.__dataclass_fields__)
        if unknown:
            raise ProfileError(f"unknown quantization option(s) {sorted(unknown)}")
        return cls(**kw, **options)


def _load_profile(where: str | Path) -> dict[str, Any]:
    path = Path(where)
    if not path.suffix and not path.exists():
        path = _PROFILE_DIR / f"{where}.toml"
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ProfileError(f"profile '{where}' not found ({path})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile {path} is not valid TOML: {exc}") from exc
