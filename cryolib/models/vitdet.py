"""DRACO's picking head: detectron2's ViTDet (simple feature pyramid + Faster R-CNN) on OUR shared ViT encoder.

DRACO (2024) §5 / ``reference/methods.md`` "Picking": a ViTDet simple feature pyramid (scales 4, 2, 1, 0.5,
LN, plus a max-pool level: p2–p6) under Faster R-CNN without the mask head, one class, square anchors,
test-time NMS 0.1–0.3 and up to 1000 detections. Li et al. 2022 (ViTDet) builds the pyramid from the
last block's stride-16 map only.

Our code supplies the backbone (:class:`cryolib.models.vit.ViTEncoder`, the module DRACO and the MAE
pretrain, wrapped as a detectron2 ``Backbone`` that returns the last block's patch tokens as a
[N, D, H/p, W/p] map) and the sizes (:data:`DETECTOR_SIZES`). Everything else (``SimpleFeaturePyramid``,
``LastLevelMaxPool``, ``RPN``/``StandardRPNHead``, ``DefaultAnchorGenerator``, ``StandardROIHeads``,
``ROIPooler``, ``FastRCNNConvFCHead``, ``FastRCNNOutputLayers`` and every loss) is detectron2's own,
imported lazily: ``import cryolib`` never needs detectron2.

Inputs are single-channel images normalised per micrograph by the caller (pixel_mean 0, pixel_std 1,
not ImageNet's), at the detector's working scale where the particle diameter is ``diameter_px``.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from cryolib.core.errors import CryolibError
from cryolib.models.vit import ViTConfig, ViTEncoder, get_config

__all__ = ["DetectorSize", "DETECTOR_SIZES", "PROFILE_DETECTOR_SIZE", "detector_size", "require_detectron2",
           "EncoderBackbone", "build_detector", "anchor_sizes", "size_as_dict", "size_from_dict", "FEATURES",
           "ROI_FEATURES"]

FEATURES = ("p2", "p3", "p4", "p5", "p6")  # the pyramid: strides 4, 8, 16, 32, 64 px
ROI_FEATURES = ("p2", "p3", "p4", "p5")  # detectron2's FPN convention: p6 feeds the RPN only
INSTALL_HINT = ("detectron2 is not installed; run `./run_all.sh --setup-only` (it installs the wheel from "
                "../shared/wheels, or builds detectron2 from its official source)")


@dataclass(frozen=True)
class DetectorSize:
    """Sizes of the pyramid and heads (channels, sampled ROIs, pooler side). Lengths in px at the working scale."""

    name: str
    fpn_channels: int  # channels of every pyramid level (paper 256)
    rpn_batch: int  # anchors sampled per image for the RPN loss (detectron2 256)
    roi_batch: int  # proposals sampled per image for the box head (detectron2 512)
    pooler_px: int  # ROIAlign output side (paper 14; 7 is detectron2's box default)
    conv_dims: tuple[int, ...]  # box head convs (ViTDet: 4 x 256 with LN)
    fc_dims: tuple[int, ...]  # box head fully connected layers (ViTDet: 1024)
    train_proposals: tuple[int, int]  # RPN (pre-NMS top-k, post-NMS top-k) per level / image in training
    test_proposals: tuple[int, int]  # the same at test time
    anchor_scales: tuple[float, ...] = (0.8, 1.0, 1.25)  # square anchors, × particle diameter, on every level
    rpn_nms: float = 0.6  # methods.md
    test_nms: float = 0.2  # DRACO 0.1; 0.2 keeps touching particles (a square pair offset by 0.67 d has IoU 0.2)
    test_detections: int = 1000  # methods.md: up to 1000 per image
    test_score: float = 0.01  # low: every score goes to the output, the operating point is chosen later


#: The detector sizes; the encoder's size comes from its checkpoint (or :func:`cryolib.models.vit.get_config`).
DETECTOR_SIZES: dict[str, DetectorSize] = {
    "paper": DetectorSize("paper", fpn_channels=256, rpn_batch=256, roi_batch=512, pooler_px=14,
                          conv_dims=(256, 256, 256, 256), fc_dims=(1024,), train_proposals=(2000, 1000),
                          test_proposals=(6000, 2000), test_nms=0.1),
    "cpu": DetectorSize("cpu", fpn_channels=64, rpn_batch=128, roi_batch=128, pooler_px=7, conv_dims=(),
                        fc_dims=(256,), train_proposals=(1000, 400), test_proposals=(2000, 1000)),
    "cpu-tiny": DetectorSize("cpu-tiny", fpn_channels=32, rpn_batch=64, roi_batch=64, pooler_px=7, conv_dims=(),
                             fc_dims=(128,), train_proposals=(600, 200), test_proposals=(1000, 500)),
}
#: profile name -> (detector size, encoder size used for a "scratch" backbone).
PROFILE_DETECTOR_SIZE: dict[str, tuple[str, str]] = {
    "smoke": ("cpu-tiny", "draco-tiny"), "default": ("cpu", "draco-cpu-b"), "full": ("paper", "draco-b")}


def detector_size(size: str | DetectorSize) -> DetectorSize:
    """A named :class:`DetectorSize` (or the given one); unknown names raise CryolibError."""
    if isinstance(size, DetectorSize):
        return size
    if size not in DETECTOR_SIZES:
        raise CryolibError(f"unknown detector size {size!r}; choose one of {', '.join(DETECTOR_SIZES)}")
    return DETECTOR_SIZES[size]


def require_detectron2() -> Any:
    """Import detectron2 (and its modeling package) or raise a CryolibError that says how to install it."""
    try:
        import detectron2
        import detectron2.modeling  # noqa: F401
    except ImportError as err:
        raise CryolibError(INSTALL_HINT) from err
    return detectron2


def anchor_sizes(diameter_px: float, size: DetectorSize) -> list[list[float]]:
    """Square anchor sides (px) per pyramid level: ``anchor_scales`` × the working-scale diameter on every level."""
    return [[float(s * diameter_px) for s in size.anchor_scales] for _ in FEATURES]


@functools.cache
def _backbone_class() -> type:
    """The detectron2 ``Backbone`` subclass around :class:`ViTEncoder` (built on first use: lazy import)."""
    require_detectron2()
    from detectron2.layers import ShapeSpec
    from detectron2.modeling import Backbone

    class _EncoderBackbone(Backbone):
        """Our ViT encoder as a detectron2 backbone: [N, C, H, W] -> {"last_feat": [N, D, H/p, W/p]}."""

        def __init__(self, encoder: ViTEncoder):
            super().__init__()
            self.encoder = encoder
            self._out_features = ["last_feat"]

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            p = self.encoder.cfg.patch_size
            h, w = x.shape[-2] // p, x.shape[-1] // p
            tokens = self.encoder(x[..., : h * p, : w * p])[:, self.encoder.num_prefix_tokens:]  # [N, h·w, D]
            return {"last_feat": tokens.transpose(1, 2).reshape(x.shape[0], -1, h, w)}  # [N, D, h, w]

        def output_shape(self) -> dict[str, Any]:
            cfg = self.encoder.cfg
            return {"last_feat": ShapeSpec(channels=cfg.embed_dim, stride=cfg.patch_size)}

    return _EncoderBackbone


def EncoderBackbone(encoder: ViTEncoder) -> nn.Module:  # noqa: N802  (a class built lazily)
    """Wrap ``encoder`` (shared weights, not copied) as a detectron2 ``Backbone`` with one stride-p feature map."""
    return _backbone_class()(encoder)


def _pyramid(encoder: ViTEncoder, size: DetectorSize) -> nn.Module:
    """detectron2's SimpleFeaturePyramid (scales 4, 2, 1, 0.5 of the stride-16 map, LN) + LastLevelMaxPool."""
    from detectron2.modeling import SimpleFeaturePyramid
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    if encoder.cfg.patch_size != 16:
        raise CryolibError(f"the ViTDet pyramid needs a patch-16 encoder (strides 4-64 from scales 4, 2, 1, 0.5), "
                           f"got patch {encoder.cfg.patch_size} ({encoder.cfg.name}); use a DRACO/MAE encoder of "
                           "patch 16 or 'scratch'")
    return SimpleFeaturePyramid(EncoderBackbone(encoder), "last_feat", size.fpn_channels, (4.0, 2.0, 1.0, 0.5),
                                top_block=LastLevelMaxPool(), norm="LN")


def _rpn(backbone: nn.Module, diameter_px: float, size: DetectorSize) -> nn.Module:
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.proposal_generator import RPN, StandardRPNHead

    shapes = backbone.output_shape()
    anchors = DefaultAnchorGenerator(sizes=anchor_sizes(diameter_px, size), aspect_ratios=[[1.0]] * len(FEATURES),
                                     strides=[shapes[f].stride for f in FEATURES], offset=0.5)
    head = StandardRPNHead(in_channels=size.fpn_channels, num_anchors=anchors.num_anchors[0], conv_dims=[-1, -1])
    return RPN(in_features=list(FEATURES), head=head, anchor_generator=anchors,
               anchor_matcher=Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True),
               box2box_transform=Box2BoxTransform(weights=(1.0, 1.0, 1.0, 1.0)), batch_size_per_image=size.rpn_batch,
               positive_fraction=0.5, pre_nms_topk=(size.train_proposals[0], size.test_proposals[0]),
               post_nms_topk=(size.train_proposals[1], size.test_proposals[1]), nms_thresh=size.rpn_nms)


def _roi_heads(backbone: nn.Module, size: DetectorSize) -> nn.Module:
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead, FastRCNNOutputLayers, StandardROIHeads

    shapes = backbone.output_shape()
    pooler = ROIPooler(output_size=size.pooler_px, scales=[1.0 / shapes[f].stride for f in ROI_FEATURES],
                       sampling_ratio=0, pooler_type="ROIAlignV2")
    head = FastRCNNConvFCHead(ShapeSpec(channels=size.fpn_channels, height=size.pooler_px, width=size.pooler_px),
                              conv_dims=list(size.conv_dims), fc_dims=list(size.fc_dims),
                              conv_norm="LN" if size.conv_dims else "")
    predictor = FastRCNNOutputLayers(head.output_shape, box2box_transform=Box2BoxTransform(weights=(10, 10, 5, 5)),
                                     num_classes=1, test_score_thresh=size.test_score, test_nms_thresh=size.test_nms,
                                     test_topk_per_image=size.test_detections)
    return StandardROIHeads(num_classes=1, batch_size_per_image=size.roi_batch, positive_fraction=0.25,
                            proposal_matcher=Matcher([0.5], [0, 1], allow_low_quality_matches=False),
                            box_in_features=list(ROI_FEATURES), box_pooler=pooler, box_head=head,
                            box_predictor=predictor)


def build_detector(encoder: ViTEncoder | ViTConfig | str, diameter_px: float,
                   size: str | DetectorSize = "cpu") -> nn.Module:
    """Faster R-CNN (detectron2's ``GeneralizedRCNN``, no mask head, one class) on ``encoder``'s ViTDet pyramid.

    ``encoder``: a (pretrained) :class:`ViTEncoder`, used as is (shared weights), or a config / size name
    for a randomly initialised one ("scratch"). ``diameter_px``: the particle diameter at the working
    scale (px), which sizes the square anchors. The model takes detectron2's list of dicts with a
    normalised [1, H, W] ``image`` (pixel_mean 0, pixel_std 1) and, in training, ``instances``.
    """
    require_detectron2()
    from detectron2.modeling import GeneralizedRCNN

    if not diameter_px > 0:
        raise CryolibError(f"the detector's working diameter must be > 0 px, got {diameter_px}")
    size = detector_size(size)
    if not isinstance(encoder, ViTEncoder):
        encoder = ViTEncoder(get_config(encoder))
    backbone = _pyramid(encoder, size)
    return GeneralizedRCNN(backbone=backbone, proposal_generator=_rpn(backbone, diameter_px, size),
                           roi_heads=_roi_heads(backbone, size), pixel_mean=[0.0], pixel_std=[1.0])


def size_as_dict(size: DetectorSize) -> dict:
    """Plain dict of a :class:`DetectorSize` (checkpoints); ``DetectorSize(**d)`` rebuilds it (tuples as lists)."""
    return dataclasses.asdict(size)


def size_from_dict(d: dict) -> DetectorSize:
    """Inverse of :func:`size_as_dict`."""
    return DetectorSize(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
