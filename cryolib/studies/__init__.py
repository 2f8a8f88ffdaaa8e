"""Each paper's experiment designs (tables, ablations, claims): what the notebooks call.

Notebook 01: :mod:`.datasets` (figures in :mod:`.plots_datasets`). Notebook 02:
:mod:`.mae_pretraining`. Notebook 03: :mod:`.cryoemmae_picking` (Figures 1-2, headline metrics),
:mod:`.cryoemmae_generalisation` (shipped picker, generalisation check, ablation, Topaz schedule) and
:mod:`.cryoemmae_claims`; figures of 02-03 in :mod:`.plots_cryoemmae`. Shared drawing helpers: :mod:`.plots`.
"""
