"""How faithfully backends run a graph: per layer, against the float64 reference.

- :func:`compare` (:mod:`~nirbridge.verify.pairwise`): two backends, layer by layer, as
  ``nirbridge deploy`` reports them;
- :func:`verify` (:mod:`~nirbridge.verify.matrix`): the agreement matrix of
  ``nirbridge verify``: every requested backend against the reference, per layer, each
  judged by its own tolerance, with its reading notes and the backends that could not
  run; :class:`Verification` renders it as text, JSON and an HTML heat map
  (:mod:`~nirbridge.verify.render`);
- :func:`near_threshold` (:mod:`~nirbridge.verify.rounding`): which spikes float rounding
  could decide, what a ``"rounding"`` tolerance accepts.

Usage::

    from nirbridge.verify import verify
    v = verify(graph, x, ["reference", "fixed", "lava-float"], labels=y)
    print(v.to_text()); v.write_html("verify.html"); v.passed
"""

from nirbridge.verify.matrix import (
    STATUSES,
    Agreement,
    BackendVerification,
    Verification,
    judge,
    verify,
)
from nirbridge.verify.pairwise import (
    GRADED_MATCH_REL,
    KINDS,
    OUTPUT_TOLERANCE,
    Comparison,
    LayerComparison,
    compare,
    compare_layers,
    compare_values,
    first_divergent_step,
    layer_kind,
    predictions,
    spike_agreement,
)
from nirbridge.verify.rounding import (
    ROUNDING_REL,
    NearThreshold,
    near_threshold,
    near_threshold_layers,
)

__all__ = ["GRADED_MATCH_REL", "KINDS", "OUTPUT_TOLERANCE", "ROUNDING_REL", "STATUSES",
           "Agreement", "BackendVerification", "Comparison", "LayerComparison",
           "NearThreshold", "Verification", "compare", "compare_layers", "compare_values",
           "first_divergent_step", "judge", "layer_kind", "near_threshold",
           "near_threshold_layers", "predictions", "spike_agreement", "verify"]
