r"""A small masked autoencoder (MAE) with an auxiliary patch-loss predictor, for hard-patch mining.

Papers: *Hard Patches Mining for Masked Image Modeling* (Wang et al., CVPR 2023,
arXiv:2304.05919), on top of *Masked Autoencoders Are Scalable Vision Learners* (He et al., CVPR
2022, arXiv:2111.06377). timm ships ViT blocks but no MAE, so the model is assembled here from
timm's `PatchEmbed` and `Block`:

- the **encoder** embeds the patches, adds fixed 2-D sin-cos positions and runs its blocks on the
  *visible* patches only;
- the **reconstruction decoder** (lighter) puts a learned mask token at every masked position,
  restores the original patch order and predicts each patch's pixels, scored by the catalog's
  [norm_pix_loss][lightning_losses.functional.norm_pix_loss];
- the **loss-predictor decoder** (same shape as the reconstruction decoder, one output per patch)
  predicts how hard each patch is to reconstruct. It is trained on the *detached*
  reconstruction losses with the paper's relative (pairwise ranking) objective
  ([loss_predictor_loss][lightning_losses.nn.mae.loss_predictor_loss], model-internal).

Masks are external: `forward(x, mask)` takes a boolean `[B, L]` mask (True = masked) with the same
number of masked patches in every image, so a callback (hard-patch mining) or the caller decides
what is hidden (patch layout: [patchify][lightning_losses.nn.patches.patchify]; MAE's masks:
[random_patch_mask][lightning_losses.nn.patches.random_patch_mask]). Both decoders work in the
original patch order, so predictions, targets and predicted losses stay index-aligned with the
mask (the reference code slices `[:, -mask_num:]` because it appends the mask tokens last;
nothing like that is needed here).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from lightning_losses.losses.reconstruction.norm_pix import norm_pix_loss
from lightning_losses.nn.patches import check_patch_mask, check_patch_rows, masked_rows, patchify
from lightning_losses.validation import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_tensor,
)

__all__ = [
    "MAEOutput",
    "MaskedAutoencoder",
    "loss_predictor_loss",
    "sincos_pos_embed_2d",
]

PREDICTOR_MODES = ("relative", "absolute", "none")


def sincos_pos_embed_2d(dim: int, grid: int) -> Tensor:
    """Fixed 2-D sine-cosine position embeddings `[grid², dim]` (MAE's, no class token).

    Half of the channels encode the row, half the column, each as
    $[\\sin(\\omega_k t), \\cos(\\omega_k t)]$ with $\\omega_k = 10000^{-k/(d/4)}$.

    Args:
        dim: embedding width, a multiple of 4.
        grid: patches per side.

    Returns:
        `[grid², dim]` float32.

    Raises:
        ValueError: `dim` is not a multiple of 4.

    Example:
        >>> from lightning_losses.nn.mae import sincos_pos_embed_2d
        >>> tuple(sincos_pos_embed_2d(8, 3).shape)
        (9, 8)
    """
    check_int("dim", dim, low=4)
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for 2-D sin-cos embeddings, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def embed(t: Tensor) -> Tensor:
        angles = t.reshape(-1, 1) * omega
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([embed(cols), embed(rows)], dim=1).float()


def loss_predictor_loss(
    pred: Tensor, target: Tensor, *, mode: str = "relative", eps: float = 1e-6
) -> Tensor:
    r"""Objective of HPM's loss predictor: rank (or regress) the detached reconstruction losses.

    Relative mode (the paper's choice; arXiv:2304.05919, Eq. 6), over the ordered pairs $(i, j)$
    of each image's masked patches, with $\ell$ detached and ties left out:

    $$
    \mathcal L_{\text{pred}} = \frac{\sum_{b,i,j} -y_{bij}\log(\sigma(p_{bj}-p_{bi})+\epsilon)
    - n_{bij}\log(1-\sigma(p_{bj}-p_{bi})+\epsilon)}{\sum_{b,i,j} (y_{bij}+n_{bij})},
    \quad y_{bij} = [\ell_{bj} > \ell_{bi}],\ n_{bij} = [\ell_{bj} < \ell_{bi}].
    $$

    The normalisation is over all valid pairs of the batch, as the authors' code; a batch with no
    valid pair (all ties) gives 0 (still attached to `pred`). Absolute mode: the MSE between $p$
    and $\ell$ standardised per image, $(\ell - \bar\ell_b)/\sqrt{\operatorname{var}_b \ell +
    \epsilon}$.

    Model-internal, not a catalog loss: its target is the model's own detached reconstruction
    loss and its normalisation runs over the pairs of the whole batch, so it has no per-sample
    `reduction="none"` form and only makes sense for the loss-predictor head of
    [MaskedAutoencoder][lightning_losses.nn.mae.MaskedAutoencoder] (see its
    [predictor_loss][lightning_losses.nn.mae.MaskedAutoencoder.predictor_loss]).

    Args:
        pred: `[B, M]` predicted losses of the masked patches.
        target: `[B, M]` their reconstruction losses (detached here).
        mode: `"relative"` or `"absolute"`.
        eps: inside the logs (relative) or added to the variance (absolute).

    Returns:
        The scalar loss (float32 for half inputs).

    Raises:
        TypeError: non-floating inputs.
        ValueError: shapes differ or are not `[B, M]`; unknown `mode`.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.mae import loss_predictor_loss
        >>> target = torch.tensor([[0.1, 0.5, 0.5]])
        >>> good = loss_predictor_loss(torch.tensor([[-3.0, 3.0, 3.0]]), target)
        >>> bad = loss_predictor_loss(torch.tensor([[3.0, -3.0, -3.0]]), target)
        >>> round(good.item(), 4), round(bad.item(), 4)
        (0.0025, 6.0021)
    """
    pred, target = check_patch_rows(pred, target)
    check_choice("mode", mode, ("relative", "absolute"))
    eps = check_number("eps", eps, low=0.0)
    if mode == "absolute":
        if pred.shape[1] < 2:
            raise ValueError("absolute mode standardises per image and needs M ≥ 2 patches")
        mean = target.mean(dim=1, keepdim=True)
        var = target.var(dim=1, keepdim=True)
        return (pred - (target - mean) / (var + eps).sqrt()).pow(2).mean()
    # [B, M, M]: entry (i, j) compares patch j with patch i.
    positive = target.unsqueeze(1) > target.unsqueeze(2)
    negative = target.unsqueeze(1) < target.unsqueeze(2)
    sig = torch.sigmoid(pred.unsqueeze(1) - pred.unsqueeze(2))
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    terms = torch.where(positive, -torch.log(sig + eps), zero) + torch.where(
        negative, -torch.log(1 - sig + eps), zero
    )
    n_valid = (positive | negative).sum()
    return terms.sum() / n_valid.clamp_min(1).to(pred.dtype)


class MAEOutput(NamedTuple):
    """What [MaskedAutoencoder.forward][lightning_losses.nn.mae.MaskedAutoencoder.forward] returns.

    Attributes:
        pred: `[B, L, P]` predicted pixels of every patch (only the masked ones are trained).
        target: `[B, L, P]` target pixels (`patchify` of the input, not normalised).
        patch_loss: `[B, L]` per-patch reconstruction losses (`norm_pix_loss`).
        pred_loss: `[B, L]` predicted losses (`None` without a loss predictor).
        mask: `[B, L]` the mask used.
    """

    pred: Tensor
    target: Tensor
    patch_loss: Tensor
    pred_loss: Tensor | None
    mask: Tensor


class _Decoder(nn.Module):
    """Embed the visible tokens, insert mask tokens, run blocks, project each patch to `out_dim`."""

    pos_embed: Tensor

    def __init__(
        self,
        in_dim: int,
        dim: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
        grid: int,
        out_dim: int,
    ) -> None:
        from timm.models.vision_transformer import Block

        super().__init__()
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed_2d(dim, grid)[None], persistent=False)
        self.blocks = nn.ModuleList(
            [Block(dim, heads, mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)

    def forward(self, latent: Tensor, ids_keep: Tensor, num_patches: int) -> Tensor:
        b = latent.shape[0]
        x = self.embed(latent)
        full = self.mask_token.to(x.dtype).expand(b, num_patches, -1).clone()
        full = full.scatter(1, ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]), x)
        full = full + self.pos_embed.to(full.dtype)
        for block in self.blocks:
            full = block(full)
        return self.head(self.norm(full))


class MaskedAutoencoder(nn.Module):
    """MAE (timm ViT blocks) with an optional loss-predictor decoder, for hard-patch mining.

    Implements the interface [HardPatchMining][lightning_losses.callbacks.HardPatchMining]
    needs: `forward(x, mask)` with an external mask and `predict_patch_loss(x)` (the teacher pass
    on all patches). See the module docstring for the architecture.

    Args:
        img_size: image side (square images).
        patch_size: patch side; `img_size` must be a multiple.
        in_chans: image channels.
        embed_dim: encoder width (multiple of 4, for the sin-cos positions).
        depth: encoder blocks.
        num_heads: encoder attention heads.
        decoder_dim: width of both decoders (multiple of 4).
        decoder_depth: blocks of each decoder.
        decoder_heads: decoder attention heads.
        mlp_ratio: MLP width / block width.
        norm_pix_loss: normalise each target patch by its mean and variance (MAE's default).
        predictor: `"relative"` (the paper's), `"absolute"` or `"none"` (plain MAE): the
            loss-predictor's objective, or no loss predictor.

    Example:
        >>> import torch
        >>> from lightning_losses.nn.mae import MaskedAutoencoder
        >>> from lightning_losses.nn.patches import random_patch_mask
        >>> mae = MaskedAutoencoder(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2,
        ...                         decoder_dim=32, decoder_depth=1, decoder_heads=2)
        >>> x = torch.randn(2, 1, 16, 16)
        >>> out = mae(x, random_patch_mask(2, mae.num_patches, 0.75))
        >>> tuple(out.pred.shape), tuple(out.pred_loss.shape)
        ((2, 16, 16), (2, 16))
        >>> tuple(mae.predict_patch_loss(x).shape)
        (2, 16)
    """

    pos_embed: Tensor

    def __init__(
        self,
        img_size: int = 32,
        patch_size: int = 4,
        in_chans: int = 1,
        embed_dim: int = 64,
        depth: int = 2,
        num_heads: int = 4,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        decoder_heads: int = 4,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = True,
        predictor: str = "relative",
    ) -> None:
        from timm.layers import PatchEmbed
        from timm.models.vision_transformer import Block

        super().__init__()
        img_size = check_int("img_size", img_size, low=1)
        patch_size = check_int("patch_size", patch_size, low=1)
        in_chans = check_int("in_chans", in_chans, low=1)
        for name, value in (("embed_dim", embed_dim), ("decoder_dim", decoder_dim)):
            if check_int(name, value, low=4) % 4:
                raise ValueError(f"{name} must be a multiple of 4, got {value}")
        check_int("depth", depth, low=1)
        check_int("decoder_depth", decoder_depth, low=1)
        check_number("mlp_ratio", mlp_ratio, low=0.0, low_inclusive=False)
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} must be a multiple of patch_size={patch_size}")
        self.norm_pix = check_bool("norm_pix_loss", norm_pix_loss)
        self.predictor = check_choice("predictor", predictor, PREDICTOR_MODES)
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        grid = img_size // patch_size
        self.num_patches = grid * grid
        patch_dim = patch_size * patch_size * in_chans

        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.register_buffer(
            "pos_embed", sincos_pos_embed_2d(embed_dim, grid)[None], persistent=False
        )
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim)
        args = (embed_dim, decoder_dim, decoder_depth, decoder_heads, mlp_ratio, grid)
        self.decoder = _Decoder(*args, patch_dim)
        # The reference copies the reconstruction decoder for the loss predictor: same shape.
        self.loss_decoder = _Decoder(*args, 1) if self.predictor != "none" else None
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # MAE's init: xavier-uniform linears, zero biases, unit LayerNorms, small mask tokens.
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, _Decoder):
            nn.init.normal_(module.mask_token, std=0.02)

    # ------------------------------------------------------------------------------ parts
    def patchify(self, images: Tensor) -> Tensor:
        """`[B, C, H, W]` to `[B, L, p·p·C]` ([patchify][lightning_losses.nn.patches.patchify])."""
        return patchify(images, self.patch_size)

    def _check_images(self, x: Tensor) -> None:
        check_tensor("x", x, floating=True)
        expected = (self.in_chans, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, expected))}], got {tuple(x.shape)}"
            )

    def encode(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Encoder on the visible patches.

        Args:
            x: `[B, C, H, W]` images.
            mask: `[B, L]` bool (True = masked, same count per image) or `None` (all visible).

        Returns:
            `(latent [B, V, D], ids_keep [B, V])`: the encoded visible patches, in patch order,
            and their patch indices.
        """
        self._check_images(x)
        b = x.shape[0]
        tokens = self.patch_embed(x) + self.pos_embed.to(x.dtype)
        if mask is None:
            ids_keep = torch.arange(self.num_patches, device=x.device).expand(b, -1)
        else:
            n_mask = check_patch_mask(mask, b, self.num_patches)
            # Stable sort: visible patches first, each image's in increasing patch index.
            ids_keep = mask.to(torch.uint8).argsort(dim=1, stable=True)[
                :, : self.num_patches - n_mask
            ]
            tokens = tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens), ids_keep

    def forward(self, x: Tensor, mask: Tensor) -> MAEOutput:
        """Reconstruct the masked patches (and predict their losses) under an external mask.

        Args:
            x: `[B, C, H, W]` images.
            mask: `[B, L]` bool, True = masked; the same number masked in every image.

        Returns:
            [MAEOutput][lightning_losses.nn.mae.MAEOutput].

        Raises:
            TypeError: `mask` is not bool.
            ValueError: wrong shapes, unequal mask counts, or every patch masked.
        """
        latent, ids_keep = self.encode(x, mask)
        pred = self.decoder(latent, ids_keep, self.num_patches)
        target = self.patchify(x)
        patch_loss = norm_pix_loss(pred, target, normalize=self.norm_pix, reduction="none")
        pred_loss = None
        if self.loss_decoder is not None:
            pred_loss = self.loss_decoder(latent, ids_keep, self.num_patches).squeeze(-1)
        return MAEOutput(pred, target, patch_loss, pred_loss, mask)

    def predict_patch_loss(self, x: Tensor) -> Tensor:
        """Teacher pass: encoder on **all** patches (empty mask), loss predictor on every patch.

        Args:
            x: `[B, C, H, W]` images.

        Returns:
            `[B, L]` predicted reconstruction losses (higher = harder).

        Raises:
            RuntimeError: the model was built with `predictor="none"`.
        """
        if self.loss_decoder is None:
            raise RuntimeError(
                "predict_patch_loss needs a loss predictor; build with predictor='relative'"
            )
        latent, ids_keep = self.encode(x, None)
        return self.loss_decoder(latent, ids_keep, self.num_patches).squeeze(-1)

    def features(self, x: Tensor) -> Tensor:
        """`[B, D]` features: the encoder's outputs on all patches, averaged (linear probe)."""
        return self.encode(x, None)[0].mean(dim=1)

    def predictor_loss(self, out: MAEOutput) -> Tensor:
        """`loss_predictor_loss` on the masked patches of `out` (detached reconstruction losses).

        Args:
            out: what `forward` returned.

        Returns:
            The scalar loss-predictor objective.

        Raises:
            RuntimeError: the model was built with `predictor="none"`.
        """
        if out.pred_loss is None:
            raise RuntimeError("this model has no loss predictor (predictor='none')")
        pred, target = masked_rows(out.pred_loss, out.mask), masked_rows(out.patch_loss, out.mask)
        return loss_predictor_loss(pred, target.detach(), mode=self.predictor)
