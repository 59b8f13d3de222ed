"""Every loss of the catalog as a function: `import lightning_losses.functional as LF`.

The modules in [lightning_losses.losses][] validate and store the hyperparameters and call these
functions: the math lives once, in each loss's own file of its family package. This module is
the one public home of every **function** of the loss package (the losses, and helpers such as
`sequence_log_probs` or `class_balanced_weights`); `tests/losses/test_public_api.py` checks that
the list below holds every function a family module exports and every registered class's
`functional`.

Example:
    >>> import torch
    >>> import lightning_losses.functional as LF
    >>> LF.focal_loss(torch.zeros(2, 4), torch.tensor([1, 3]), gamma=0.0)  # = log 4
    tensor(1.3863)
"""

from lightning_losses.losses._embedding import gather_batch
from lightning_losses.losses.audio.stft import multi_resolution_stft_loss
from lightning_losses.losses.calibration.dual_focal import dual_focal_loss
from lightning_losses.losses.calibration.encouraging import encouraging_loss
from lightning_losses.losses.classification.ce import cross_entropy
from lightning_losses.losses.classification.focal import (
    focal_loss,
    poly_focal_loss,
    sigmoid_focal_loss,
    sigmoid_focal_loss_torchvision,
)
from lightning_losses.losses.classification.logit_adjusted import logit_adjusted_loss
from lightning_losses.losses.classification.one_vs_rest import one_vs_rest_loss
from lightning_losses.losses.classification.poly import poly_loss
from lightning_losses.losses.classification.spherical_z import spherical_z_loss
from lightning_losses.losses.classification.squentropy import squentropy_loss
from lightning_losses.losses.classification.stablemax import log_stablemax, stablemax_cross_entropy
from lightning_losses.losses.contrastive.align_uniform import alignment_uniformity_loss, uniformity
from lightning_losses.losses.contrastive.decoupled_softmax import decoupled_softmax_loss
from lightning_losses.losses.contrastive.deep_supervision import contrastive_deep_supervision_loss
from lightning_losses.losses.contrastive.info_nce import info_nce_loss, nt_xent_loss
from lightning_losses.losses.contrastive.siglip import sigmoid_contrastive_loss
from lightning_losses.losses.contrastive.supcon import supcon_loss
from lightning_losses.losses.hidden_states import consumes_hidden_states
from lightning_losses.losses.language.chunked_ce import chunked_linear_cross_entropy
from lightning_losses.losses.language.fused_ce import cross_entropy_with_z_loss
from lightning_losses.losses.language.load_balancing import load_balancing_loss
from lightning_losses.losses.language.zloss import z_loss
from lightning_losses.losses.metric.adaface import adaface_loss, adaface_norm_stats
from lightning_losses.losses.metric.circle import circle_loss
from lightning_losses.losses.metric.ge2e import ge2e_loss
from lightning_losses.losses.metric.margin_softmax import (
    arcface_loss,
    arcface_target_logit,
    cosface_loss,
    normalized_softmax_loss,
)
from lightning_losses.losses.metric.multi_similarity import multi_similarity_loss
from lightning_losses.losses.metric.pair_margin import contrastive_loss
from lightning_losses.losses.metric.partial_fc import partial_fc_loss, sample_centres
from lightning_losses.losses.metric.prototypical import prototypical_loss
from lightning_losses.losses.metric.triplet import triplet_margin_loss
from lightning_losses.losses.preference.dpo import (
    conservative_dpo_loss,
    dpo_loss,
    implicit_rewards,
    robust_dpo_loss,
    rpo_loss,
)
from lightning_losses.losses.preference.ipo import ipo_loss
from lightning_losses.losses.preference.logprobs import sequence_log_probs
from lightning_losses.losses.ranking.bce_rec import bce_rec_loss
from lightning_losses.losses.ranking.bpr import bpr_loss
from lightning_losses.losses.ranking.cosine_contrastive import cosine_contrastive_loss
from lightning_losses.losses.ranking.macro_auc import (
    pairwise_macro_auc_loss,
    reweighted_univariate_auc_loss,
)
from lightning_losses.losses.ranking.sampled_softmax import sampled_softmax_loss
from lightning_losses.losses.reconstruction.norm_pix import norm_pix_loss
from lightning_losses.losses.regression.binned import regression_with_binned_classification_loss
from lightning_losses.losses.regression.card import signal_decay_robust_loss
from lightning_losses.losses.regression.madl import madl_loss
from lightning_losses.losses.regression.pointwise import (
    log_cosh_loss,
    mape_loss,
    msle_loss,
    rmse_loss,
)
from lightning_losses.losses.regression.pseudo_huber import (
    pseudo_huber_loss,
    scheduled_pseudo_huber_loss,
)
from lightning_losses.losses.regression.quantile import (
    monotone_quantiles,
    pinball_loss,
    quantile_crossing_penalty_loss,
)
from lightning_losses.losses.regularization.energy_pointing import energy_pointing_loss
from lightning_losses.losses.regularization.sinkhorn import (
    sinkhorn_alignment_loss,
    sinkhorn_divergence,
)
from lightning_losses.losses.robust.active_passive import active_passive_loss
from lightning_losses.losses.robust.comp_sum import comp_sum_loss
from lightning_losses.losses.robust.generalized_ce import generalized_cross_entropy
from lightning_losses.losses.robust.ldr_kl import ldr_kl_loss
from lightning_losses.losses.robust.normalized_ce import normalized_cross_entropy
from lightning_losses.losses.robust.normalized_focal import normalized_focal_loss
from lightning_losses.losses.robust.prob_mae import mean_absolute_error_loss
from lightning_losses.losses.robust.reverse_ce import reverse_cross_entropy
from lightning_losses.losses.robust.symmetric_ce import symmetric_cross_entropy
from lightning_losses.losses.segmentation.combined import dice_ce_loss, dice_focal_loss
from lightning_losses.losses.segmentation.deep_supervision import (
    deep_supervision_loss,
    deep_supervision_weights,
)
from lightning_losses.losses.segmentation.dice import (
    dice_loss,
    generalized_dice_loss,
    tversky_loss,
)
from lightning_losses.losses.segmentation.mip import max_intensity_projection_loss
from lightning_losses.losses.segmentation.prior_entropy import prior_entropy_minimization_loss
from lightning_losses.losses.utils import class_balanced_weights
from lightning_losses.losses.weak_supervision.aggregate import (
    bag_level_loss,
    instance_level_loss,
    interpolating_aggregate_loss,
)
from lightning_losses.losses.weak_supervision.proportion import (
    confidence_interval_proportion_loss,
    proportion_loss,
)

__all__ = [
    "active_passive_loss",
    "adaface_loss",
    "adaface_norm_stats",
    "alignment_uniformity_loss",
    "arcface_loss",
    "arcface_target_logit",
    "bag_level_loss",
    "bce_rec_loss",
    "bpr_loss",
    "chunked_linear_cross_entropy",
    "circle_loss",
    "class_balanced_weights",
    "comp_sum_loss",
    "confidence_interval_proportion_loss",
    "conservative_dpo_loss",
    "consumes_hidden_states",
    "contrastive_deep_supervision_loss",
    "contrastive_loss",
    "cosface_loss",
    "cosine_contrastive_loss",
    "cross_entropy",
    "cross_entropy_with_z_loss",
    "decoupled_softmax_loss",
    "deep_supervision_loss",
    "deep_supervision_weights",
    "dice_ce_loss",
    "dice_focal_loss",
    "dice_loss",
    "dpo_loss",
    "dual_focal_loss",
    "encouraging_loss",
    "energy_pointing_loss",
    "focal_loss",
    "gather_batch",
    "ge2e_loss",
    "generalized_cross_entropy",
    "generalized_dice_loss",
    "implicit_rewards",
    "info_nce_loss",
    "instance_level_loss",
    "interpolating_aggregate_loss",
    "ipo_loss",
    "ldr_kl_loss",
    "load_balancing_loss",
    "log_cosh_loss",
    "log_stablemax",
    "logit_adjusted_loss",
    "madl_loss",
    "mape_loss",
    "max_intensity_projection_loss",
    "mean_absolute_error_loss",
    "monotone_quantiles",
    "msle_loss",
    "multi_resolution_stft_loss",
    "multi_similarity_loss",
    "norm_pix_loss",
    "normalized_cross_entropy",
    "normalized_focal_loss",
    "normalized_softmax_loss",
    "nt_xent_loss",
    "one_vs_rest_loss",
    "pairwise_macro_auc_loss",
    "partial_fc_loss",
    "pinball_loss",
    "poly_focal_loss",
    "poly_loss",
    "prior_entropy_minimization_loss",
    "proportion_loss",
    "prototypical_loss",
    "pseudo_huber_loss",
    "quantile_crossing_penalty_loss",
    "regression_with_binned_classification_loss",
    "reverse_cross_entropy",
    "reweighted_univariate_auc_loss",
    "rmse_loss",
    "robust_dpo_loss",
    "rpo_loss",
    "sample_centres",
    "sampled_softmax_loss",
    "scheduled_pseudo_huber_loss",
    "sequence_log_probs",
    "sigmoid_contrastive_loss",
    "sigmoid_focal_loss",
    "sigmoid_focal_loss_torchvision",
    "signal_decay_robust_loss",
    "sinkhorn_alignment_loss",
    "sinkhorn_divergence",
    "spherical_z_loss",
    "squentropy_loss",
    "stablemax_cross_entropy",
    "supcon_loss",
    "symmetric_cross_entropy",
    "triplet_margin_loss",
    "tversky_loss",
    "uniformity",
    "z_loss",
]
