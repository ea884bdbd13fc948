"""Deployment recipes: one TOML file says what to deploy, where, and what must hold.

``nirbridge deploy RECIPE.toml`` (:func:`run_recipe`) runs, with progress lines:

1. the model: the factory called with its keyword arguments and the checkpoint loaded
   (``torch.load(weights_only=True)``), or a ``.nir`` file;
2. export to NIR, written to the output directory and read back;
3. every sample of the data set's split (:mod:`nirbridge.datasets`), streamed in batches
   of ``batch_size`` (:mod:`~nirbridge.recipes.stream`): torch accuracy (the trained
   module, float64), reference accuracy (nirbridge's float64 executor on the file read
   back) and the largest output difference from torch, and the fixed-point emulator (the
   ``fixed`` backend: accuracy, spike and prediction agreement with the reference), the
   event counts and the sanity checks;
4. Lava floating_pt and 5. Lava fixed_pt (Loihi 2 simulation) on the first
   ``lava_samples`` samples: per-layer spike agreement with the reference, prediction
   agreement, accuracy; in fixed_pt every sample's integers (every node's output, input
   and states, and the outputs) must equal the emulator's: the check
   ``lava_fixed_identical``, added to every recipe that runs fixed_pt on Lava;
6. profile: the event counts of every sample, energy per target, chip mapping;
7. verify (optional ``[verify]``): the agreement matrix of the named backends
   (:func:`nirbridge.verify.verify`) on the samples kept for Lava;

then prints one summary table and the seconds of each stage, writes the JSON and HTML
reports, and fails with
:class:`~nirbridge.errors.CheckFailed` (exit code 3) when a check is not met or the
reference run is not sane (:mod:`nirbridge.sanity`: a forward-Euler step with dt/τ > 1,
a diverged state, a spiking layer that never spikes). The dt used is printed with the
reference stage and recorded in the reports.

Recipe schema (every error names the file and the field)::

    name = "digits_lif"                          # str: names the outputs
    description = "..."                          # str, optional

    [model]                                      # factory + checkpoint, or nir
    factory = "nirbridge.examples:digits_conv_snn"   # MODULE_OR_FILE:FACTORY
    kwargs = {neuron = "lif"}                    # optional: the factory's arguments
    checkpoint = "checkpoints/digits_lif.pt"     # state_dict, relative to the recipe
    # nir = "model.nir"                          # instead of factory: a NIR file
    # from = "snntorch"                          # with nir: read it as that framework's
                                                 # exporter wrote it (its dt convention)
    dt = 1.0                                     # optional: the time step (default 1.0
                                                 # for a factory, the file's own for nir;
                                                 # a file without one needs it or from)

    [data]
    dataset = "digits"                           # digits | npz:PATH | tonic:NAME |
                                                 # MODULE:FACTORY (nirbridge.datasets)
    # root = "data/tonic"                        # tonic:NAME only: tonic's save_to folder
    split = "test"                               # optional: test (default) | train
    encoding = "direct"                          # direct | rate | latency | rows | frames
                                                 # (rows: row t at step t, steps >= 8;
                                                 # frames: the data are [T, ...] per sample)
    seed = 0                                     # optional: seed of the rate encoding

    [simulation]
    steps = 8                                    # time steps per sample
    samples = 360                                # optional: the first samples scored
                                                 # (default: the whole split)
    lava_samples = 96                            # optional: the first samples Lava runs
                                                 # (default: all up to 360; 0: no Lava)
    batch_size = 128                             # optional: samples per streamed batch
    modes = ["floating_pt", "fixed_pt"]          # optional: Lava modes run (default both)
    target = "loihi2"                            # optional: simulated target (quantization)
    timeout_s = 600.0                            # optional: time limit of each Lava run

    [profile]
    targets = ["loihi2", "cmos45-fp32"]          # energy per sample for each profile

    [checks]                                     # optional; min_/max_ + metric
    max_fixed_accuracy_drop = 1.0                # percentage points
    min_fixed_spike_agreement = 99.0             # percent

    [train]                                      # optional: `nirbridge train RECIPE`
    epochs = 20
    batch_size = 64
    lr = 0.01
    seed = 0

    [verify]                                     # optional: after the other stages,
    backends = ["fixed", "lava-float"]           # nirbridge verify of these backends on
                                                 # the test inputs; its verdict is the
                                                 # check "verify", its matrix in reports

    [output]
    dir = "out"                                  # optional: relative to the recipe and
                                                 # inside its folder (default: out/<name>
                                                 # in the current directory)

**A recipe is code.** ``[model] factory`` (and a ``MODULE:FACTORY`` data set) names Python
that nirbridge imports and calls with the recipe's ``kwargs``: trust a recipe as you would
a Makefile. Loading checks every field, path and name first and runs no code before that
ends; a standard-library callable (``os:system``, ``builtins:open``...) is refused as a
factory; a ``FILE.py:NAME`` factory is found beside the recipe. A recipe writes only
inside its own folder: ``output.dir`` (and the checkpoint ``nirbridge train`` writes) may
not be absolute elsewhere, escape with ``..`` or through a symlink (``deploy --out-dir``
and ``train -o`` choose another place), and ``train`` replaces an existing checkpoint
only with ``--overwrite``.

Check metrics (:data:`METRICS`): accuracies and agreements in percent, accuracy drops in
percentage points (reference accuracy − Lava accuracy on the same samples),
``reference_torch_diff`` as an absolute output difference. A check whose metric could
not be measured (its stage failed) fails.

The package, along the data flow: :mod:`~nirbridge.recipes.schema` (the settings'
dataclasses, modes, metrics), :mod:`~nirbridge.recipes.load` (TOML → checked
:class:`Recipe`), :mod:`~nirbridge.recipes.execute` (the stages → :class:`RecipeRun`),
:mod:`~nirbridge.recipes.tables` (text tables), :mod:`~nirbridge.recipes.reports` (JSON,
HTML, plots) and :mod:`~nirbridge.recipes.command` (:func:`run_recipe`).
"""

from nirbridge.recipes.command import run_recipe
from nirbridge.recipes.execute import (
    CheckResult,
    RecipeRun,
    _build_model,  # noqa: F401  (used by the tests of the shipped checkpoints)
    execute_recipe,
    lava_options,
    recipe_batches,
    recipe_inputs,
)
from nirbridge.recipes.load import load_recipe
from nirbridge.recipes.reports import build_recipe_report, write_recipe_reports
from nirbridge.recipes.schema import (
    METRICS,
    MODE_SHORT,
    MODES,
    Check,
    DataSpec,
    Echo,
    ModelSpec,
    Recipe,
    SimulationSpec,
    TrainSpec,
)
from nirbridge.recipes.tables import (
    energy_cell,
    format_run,
    stage_rows,
    summary_table,
    timing_table,
)

__all__ = ["METRICS", "MODES", "MODE_SHORT", "Check", "CheckResult", "DataSpec", "Echo",
           "ModelSpec", "Recipe", "RecipeRun", "SimulationSpec", "TrainSpec",
           "build_recipe_report", "energy_cell", "execute_recipe", "format_run",
           "lava_options", "load_recipe", "recipe_batches", "recipe_inputs", "run_recipe",
           "stage_rows", "summary_table", "timing_table", "write_recipe_reports"]
