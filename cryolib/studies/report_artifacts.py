"""The registry of the reproduction report: every table and figure of both papers, and our own checks.

One :class:`Artifact` per paper artifact (Cryo-EMMAE Figs. 1-2; DRACO Tables 1-6 and Figures 1-8) and per
check we add (generalisation, real data, few-shot, pretraining). Each names the notebook (or benchmark
script) that makes it, the result files it writes (stems under ``results/<profile>/``), the library
function that computes it and how :mod:`cryolib.studies.report` summarises it: which columns are ours,
which are the paper's, keyed by which columns. The function is a Python object (or, for a module that
another part of issue 15 adds, its ``"module:name"`` until that lands), so the report links its file and
line through :mod:`inspect` and the link cannot go stale.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from cryolib.core.jsonable import REPO_ROOT
from cryolib.studies import cryoemmae_claims, cryoemmae_generalisation, cryoemmae_picking, datasets
from cryolib.studies import draco_ablations, draco_curation, draco_denoising, draco_picking, draco_pretraining
from cryolib.studies import draco_training_length, mae_pretraining, picking_generalisation, realdata

#: A library function, or ``"module:qualname"`` for one that is resolved when the report is built.
Ref = Union[Callable, str]

CRYOEMMAE, DRACO, OURS = "Cryo-EMMAE", "DRACO", "ours"
PAPERS = (CRYOEMMAE, DRACO)


@dataclass(frozen=True)
class Summary:
    """How to summarise an artifact's first table.

    ``keys`` identify a row (method, dataset, ...); ``pairs`` are (ours, paper's) column pairs, empty to
    pair every ``paper_X`` with ``X``; ``extra`` are our columns without a paper counterpart;
    ``aggregate`` means the rows are averaged per key; ``where`` keeps rows whose column equals a value;
    ``difference`` adds the column ours − paper per pair.
    """

    keys: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...] = ()
    extra: tuple[str, ...] = ()
    aggregate: bool = False
    where: tuple[tuple[str, object], ...] = ()
    difference: bool = True  # False where ours − paper means nothing (CPU vs the paper's GPUs)


@dataclass(frozen=True)
class Claims:
    """A claims table (columns claim, the paper's statement/numbers, ours, holds) and its function."""

    stem: str
    function: Ref


@dataclass(frozen=True)
class Artifact:
    """One table or figure of a paper (or one check of ours) and where everything about it lives."""

    key: str
    paper: str  # CRYOEMMAE, DRACO or OURS (a check the papers do not make)
    name: str  # "Table 2", "Figure 4", "Generalisation check"
    title: str
    source: str  # notebook stem ("05_denoising") or script path ("benchmarks/realdata.py")
    function: Ref
    tables: tuple[str, ...] = ()  # stems under tables/ (or "sub/stem" under results/<profile>/)
    figures: tuple[str, ...] = ()  # stems under figures/ (or "sub/stem")
    claims: tuple[Claims, ...] = ()
    summary: Summary | None = None
    note: str = ""  # what the paper's numbers are or why there are none (prose, no numbers)
    new: bool = False  # added by issue 15 (resolution, cryo-ET): files may not exist yet


def is_script(source: str) -> bool:
    """True when ``source`` is a benchmark script, not a notebook."""
    return source.endswith(".py")


def resolve(ref: Ref) -> Callable | None:
    """The function ``ref`` names, or None when its module or name does not exist (yet)."""
    if callable(ref):
        return ref
    module, _, name = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj if callable(obj) else None


def ref_name(ref: Ref) -> str:
    """``module.qualname`` of ``ref`` without importing anything."""
    if callable(ref):
        return f"{ref.__module__}.{ref.__qualname__}"
    return ref.replace(":", ".")


def source_location(ref: Ref) -> tuple[Path, int] | None:
    """(source file, first line) of the function ``ref`` names, found by :mod:`inspect`; None if unresolved."""
    fn = resolve(ref)
    if fn is None:
        return None
    fn = inspect.unwrap(fn)
    lines, first = inspect.getsourcelines(fn)
    offset = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith(("def ", "async def ", "class "))), 0)
    return Path(inspect.getsourcefile(fn)).resolve(), first + offset  # the def line, after any decorators


def script_path(source: str) -> Path:
    """Absolute path of a benchmark script named relative to the repository."""
    return REPO_ROOT / source


_PICKING = Summary(keys=("dataset", "method"), extra=("precision", "recall"))
_F1 = ("f1", "precision", "recall")

ARTIFACTS: tuple[Artifact, ...] = (
    # ---------------- the data and the pretrained models (our checks, shown after both papers)
    Artifact("analogs", OURS, "Simulated analogs", "The physics of every analog (dose, ice, drift, SNR)",
             "01_datasets", datasets.summary_table, tables=("datasets_statistics",),
             figures=("datasets_gallery", "thon_rings", "triplet_odd_even_full", "quality_defects"),
             summary=Summary(keys=("dataset",), extra=("micrographs", "particles_per_micrograph", "snr_db",
                                                       "shift_error_rms_px"))),
    Artifact("mae_pretraining", OURS, "MAE pretraining", "Cryo-EMMAE's MAE: loss per training analog",
             "02_pretrain_mae", mae_pretraining.run_summaries, tables=("mae_pretraining",),
             figures=("mae_loss_curves", "mae_reconstructions"),
             summary=Summary(keys=("model",), extra=("steps", "first_step_loss", "final_train_loss",
                                                     "final_val_loss"))),
    # ---------------- Cryo-EMMAE (Zamanos et al., 2024)
    Artifact("cryoemmae_fig1", CRYOEMMAE, "Figure 1", "The picking pipeline on one micrograph", "03_cryoemmae_picking",
             cryoemmae_picking.fig1_example, figures=("fig1_pipeline",),
             note="A picture of the pipeline (pre-processing, embedding, clustering, post-processing); no numbers."),
    Artifact("cryoemmae_fig2", CRYOEMMAE, "Figure 2", "Cross-dataset picking: 4 training sets x 14 evaluation sets",
             "03_cryoemmae_picking", cryoemmae_picking.cross_dataset_table, tables=("fig2_cross_dataset",),
             figures=("fig2_cross_dataset",), claims=(Claims("fig2_claims", cryoemmae_claims.claims_table),),
             summary=Summary(keys=("method", "in_domain"), extra=("f1", "precision", "recall", "iou"), aggregate=True),
             note="The paper shows bar charts only, so its claims are compared in words and ours are the means "
                  "over analogs, in-domain (trained and scored on the same analog) or not."),
    Artifact("cryoemmae_generalisation", OURS, "Generalisation check", "Pickers on analogs no training set resembles",
             "03_cryoemmae_picking", cryoemmae_generalisation.generalisation_check, tables=("generalisation_check",),
             summary=Summary(keys=("dataset", "method"), extra=_F1)),
    Artifact("cryoemmae_picker_ablation", OURS, "Picker ablation", "The paper/repository clustering vs cryolib's",
             "03_cryoemmae_picking", cryoemmae_generalisation.picker_ablation, tables=("picker_ablation",),
             summary=Summary(keys=("setting",), extra=_F1, aggregate=True)),
    Artifact("cryoemmae_topaz_length", OURS, "Topaz training length", "How far the profile's Topaz schedule is from "
             "a well-trained Topaz", "03_cryoemmae_picking", cryoemmae_generalisation.topaz_training_length,
             tables=("topaz_training_length",), figures=("topaz_training_length",),
             summary=Summary(keys=("schedule",), extra=("epochs", "best_val_auprc", "f1_calibrated", "oracle_f1"))),
    # ---------------- DRACO (2024)
    Artifact("draco_fig1", DRACO, "Figure 1", "Composition of the pretraining data", "01_datasets",
             datasets.composition, figures=("draco_fig1_dataset_composition",),
             note="The paper's pie chart is of its EMPIAR corpus; ours is of the simulated analogs."),
    Artifact("draco_fig2", DRACO, "Figure 2", "Odd/even masking and the pretraining targets", "04_pretrain_draco",
             draco_pretraining.figure2_example, figures=("fig2_draco_masking",),
             note="A picture of the method; no numbers."),
    Artifact("draco_pretraining", DRACO, "Pretraining cost", "DRACO and MAE pretraining: losses and throughput",
             "04_pretrain_draco", draco_pretraining.throughput_table, tables=("draco_pretraining",),
             figures=("draco_loss_curves", "draco_throughput"),
             claims=(Claims("draco_pretraining_claims", draco_pretraining.pretraining_claims),),
             summary=Summary(keys=("run",), pairs=(("epochs", "paper_epochs"), ("tiles_per_s", "paper_crops_per_s")),
                             extra=("parameters_M", "final_loss"), difference=False),
             note="The paper's epochs and crops/s are on its 64 A800 GPUs; ours on this machine's CPUs."),
    Artifact("draco_table1", DRACO, "Table 1", "Particle picking: precision, recall, F1 on three unseen sets",
             "07_draco_picking", draco_picking.table1, tables=("table1_picking",), figures=("table1_picking_bars",),
             claims=(Claims("picking_claims", draco_picking.claims_table),), summary=_PICKING,
             note="Rows marked reported are the paper's numbers for pickers that cannot run here."),
    Artifact("draco_table1_resolution", DRACO, "Table 1 (resolution)", "Resolution of the map from each method's "
             "picks at the same particle count", "07_draco_picking",
             "cryolib.studies.picking_resolution:table1_resolution", tables=("table1_resolution",),
             claims=(Claims("table1_resolution_claims", "cryolib.studies.picking_resolution:resolution_claims"),),
             summary=Summary(keys=("dataset", "method"), pairs=(("resolution_A", "paper_resolution_A"),),
                             extra=("n_particles", "n_true_positive", "n_false_positive")),
             note="Maps from known poses without refinement, at one particle cap per analog; the paper's are "
                  "cryoSPARC refinements of real data at ~1 Å/px, ours are bounded by Nyquist at 4-5 Å/px.",
             new=True),
    Artifact("draco_fig3", DRACO, "Figure 3", "What each picker finds (true/false positives, misses)",
             "07_draco_picking", draco_picking.figure3_panels, figures=("fig3_picking",),
             note="Pictures; the numbers behind them are Table 1's."),
    Artifact("draco_few_shot", OURS, "Few-shot picking", "One annotated micrograph: adapted detector vs Topaz "
             "trained on the same labels", "07_draco_picking", draco_picking.few_shot_curve,
             tables=("few_shot_picking",), figures=("few_shot_picking",),
             summary=Summary(keys=("method", "n_labels"), extra=("f1", "f1_oracle", "precision", "recall"))),
    Artifact("draco_table2", DRACO, "Table 2", "Denoising: SNR on four analogs", "05_denoising",
             draco_denoising.table2, tables=("table2_snr", "table2_snr_per_micrograph"), figures=("table2_snr_bars",),
             claims=(Claims("table2_claims", draco_denoising.claims_table),),
             summary=Summary(keys=("dataset", "method"), pairs=(("snr_eq11_db", "paper_snr_eq11_db"),),
                             extra=("true_snr_db", "band_snr_db")),
             note="Eq. 11 SNR on hand-picked regions in the paper, on rule-picked regions here; the true SNR "
                  "columns need the clean image, which only a simulation has."),
    Artifact("draco_table3", DRACO, "Table 3", "Resolution of the map from denoised particles (poses fixed)",
             "05_denoising", "cryolib.studies.denoised_resolution:table3", tables=("table3_resolution",
                                                                                   "table3_fsc_curves"),
             figures=("table3_fsc_curves",),
             claims=(Claims("table3_claims", "cryolib.studies.denoised_resolution:table3_claims"),),
             summary=Summary(keys=("dataset", "method"), pairs=(("resolution_A", "paper_resolution_A"),),
                             extra=("n_particles",)), new=True),
    Artifact("draco_table4", DRACO, "Table 4", "Micrograph curation: accept or reject", "06_curation",
             draco_curation.table4, tables=("table4_curation", "table4_per_class", "curation_unseen_settings"),
             figures=("table4_curation", "fig_curation_confusion", "curation_classes"),
             claims=(Claims("table4_claims", draco_curation.claims_table),),
             summary=Summary(keys=("method",), pairs=(("f1", "paper_f1"), ("accuracy", "paper_accuracy")),
                             extra=("precision", "recall"))),
    Artifact("draco_table5", DRACO, "Table 5", "Mask ratio: curation and SNR", "08_ablations", draco_ablations.table5,
             tables=("table5_mask_ratio", "ablation_snr", "ablation_snr_per_micrograph"),
             figures=("table5_mask_ratio",),
             claims=(Claims("ablation_claims", draco_ablations.claims_table),),
             summary=Summary(keys=("run",), pairs=(("f1", "paper_f1"),
                                                   ("snr_eq11_db_sim-11521", "paper_snr_eq11_db_sim-11521"),
                                                   ("snr_eq11_db_sim-10096", "paper_snr_eq11_db_sim-10096")),
                             extra=("mean_true_snr_db",))),
    Artifact("draco_table6_denoising", DRACO, "Table 6 (denoising)", "Loss ablation: SNR without each loss term",
             "08_ablations", draco_ablations.table6_denoising, tables=("table6_denoising",),
             figures=("table6_denoising",), claims=(Claims("ablation_claims", draco_ablations.claims_table),),
             summary=Summary(keys=("training_scheme",), pairs=(("snr_eq11_db", "paper_snr_db"),),
                             extra=("true_snr_db", "mean_true_snr_db"))),
    Artifact("draco_table6_picking", DRACO, "Table 6 (picking)", "Loss ablation: picking without each loss term",
             "07_draco_picking", draco_picking.table6_picking, tables=("table6_picking",),
             summary=Summary(keys=("run", "method"))),
    Artifact("draco_fig4", DRACO, "Figure 4", "Denoised crops of the four analogs", "05_denoising",
             draco_denoising.example_crops, figures=("fig4_denoising",), note="Pictures; Table 2 holds the numbers."),
    Artifact("draco_fig5", DRACO, "Figure 5", "Denoising analogs the model never saw", "05_denoising",
             draco_denoising.generalisation_check, tables=("denoising_generalisation",),
             figures=("fig5_denoising_generalisation",),
             summary=Summary(keys=("dataset", "method"), extra=("true_snr_db", "band_snr_db")),
             note="The paper shows pictures only; the true SNR here is ours."),
    Artifact("draco_fig6", DRACO, "Figure 6", "Denoising at each mask ratio and loss ablation", "08_ablations",
             draco_ablations.figure6_examples, figures=("fig6_mask_ratios", "fig6b_loss_ablations",
                                                        "ablation_loss_curves"),
             note="Pictures; Tables 5 and 6 hold the numbers."),
    Artifact("draco_fig7", DRACO, "Figure 7", "What DRACO and the MAE reconstruct from masked inputs", "05_denoising",
             draco_denoising.reconstruction_examples, figures=("fig7_reconstruction",), note="Pictures; no numbers."),
    Artifact("draco_fig8", DRACO, "Figure 8", "Zero-shot denoising of a cryo-ET tilt series", "09_cryoet_zero_shot",
             "cryolib.studies.cryoet:fig8_table", tables=("fig8_cryoet",),
             figures=("fig8_cryoet_zero_shot", "fig8_cryoet_xz_sections"),
             claims=(Claims("fig8_claims", "cryolib.studies.cryoet:claims_table"),),
             summary=Summary(keys=("stage", "method"), extra=("panel", "true_snr_db", "cnr", "n_profiles")),
             note="The paper shows pictures only and says in words what each panel shows; every number here is "
                  "ours, scored against the simulation's noise-free tilts and tomogram.", new=True),
    Artifact("picking_generalisation", OURS, "Picking generalisation check", "The adapted detector and its peers on "
             "unseen analogs and real CryoPPP sets", "benchmarks/picking_generalisation.py",
             picking_generalisation.check_dataset, tables=("picking_generalisation",),
             summary=Summary(keys=("dataset", "method"), extra=("operating_point", "f1", "precision", "recall"))),
    Artifact("draco_training_length", OURS, "DRACO training-length check", "DRACO-B's denoising against its "
             "training length, patch size and recipe, beside Topaz-Denoise and a 16 px block mean on the same "
             "micrographs",
             "benchmarks/draco_training_length.py", draco_training_length.score_lengths,
             tables=("draco_training_length", "draco_training_length_frc", "draco_training_length_curve",
                     "draco_training_length_trend", "draco_training_length_curation"),
             figures=("draco_training_length_snr", "draco_training_length_frc"),
             claims=(Claims("draco_training_length_claims", draco_training_length.length_claims),),
             summary=Summary(keys=("dataset", "method"), extra=("epochs", "snr_eq11_db", "true_snr_db", "band_snr_db"))),
    Artifact("pretrain_throughput", OURS, "DRACO pretraining throughput", "Tiles/s of the one training loop, the "
             "FLOP/s it reaches against the device's matrix-product rate and bf16 peak, beside the rate the paper's "
             "timings imply", "benchmarks/pretrain_throughput.py", "cryolib.training.throughput:throughput_row",
             tables=("benchmarks/pretrain_throughput",),
             summary=Summary(keys=("source", "stage", "model", "device"),
                             extra=("tiles_per_s", "gflop_per_tile", "achieved_tflops", "mfu", "fraction_of_matmul")),
             note="The paper gives hours and GPUs, not rates; its rows are derived from them."),
    Artifact("realdata_denoising", OURS, "Real-data denoising check", "Eq. 11 SNR on real CryoPPP micrographs",
             "benchmarks/realdata.py", realdata.real_denoising_check, tables=("realdata/realdata_denoising",),
             figures=("realdata/realdata_denoising",),
             summary=Summary(keys=("dataset", "method"), extra=("mean_snr_eq11_db", "gain_over_raw_db"))),
)


@dataclass(frozen=True)
class Comparison:
    """The cross-paper comparison: MAE features (Cryo-EMMAE) against DRACO features on one table."""

    title: str
    artifact: str  # key of the artifact whose first table holds both rows
    mae: str  # method label of the MAE row
    draco: str  # method label of the DRACO row
    values: tuple[str, ...]
    higher_is_better: bool = True


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("Annotation-free clustering picking (Table 1 protocol)", "draco_table1", draco_picking.EMMAE_MAE,
               draco_picking.EMMAE_DRACO, ("f1", "precision", "recall")),
    Comparison("Denoising (Table 2)", "draco_table2", "MAE", "DRACO-B", ("snr_eq11_db", "true_snr_db", "band_snr_db")),
    Comparison("Resolution from denoised particles (Table 3)", "draco_table3", "MAE", "DRACO-B", ("resolution_A",),
               higher_is_better=False),
)


def artifact(key: str) -> Artifact:
    """The registered artifact called ``key``."""
    return next(a for a in ARTIFACTS if a.key == key)
