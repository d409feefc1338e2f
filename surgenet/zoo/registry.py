"""The zoo: one record per released SurgeNet checkpoint, the single source of truth.

Everything that names a model (``list_models``, ``model_info``, ``hubconf.py``, the CLI, the
model cards and the README table) reads this table; nothing is typed twice.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import asdict, dataclass, field
from typing import Any

from ..exceptions import UnknownModelError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Statistics of surgical frames with which the SurgeNet authors normalised their downstream benchmark.
SURGICAL_MEAN = (0.4689, 0.2954, 0.2871)
SURGICAL_STD = (0.2469, 0.2103, 0.2119)

CC_BY_NC_SA = "cc-by-nc-sa-4.0"

PAPER_SURGENETXL = (
    "Jaspers, de Jong et al., Scaling up self-supervised learning for improved surgical "
    "foundation models, Medical Image Analysis (2025), doi:10.1016/j.media.2024.103348"
)
PAPER_SURGENET = (
    "Jaspers et al., Exploring the Effect of Dataset Diversity in Self-Supervised Learning for "
    "Surgical Computer Vision, DEMI workshop at MICCAI 2024, doi:10.1007/978-3-031-73748-0_5"
)

PAPER_SURGENET_DINO = (
    "de Jong et al., Towards Effective Surgical Representation Learning with DINO Models, Medical "
    "Imaging with Deep Learning (MIDL) 2026, https://openreview.net/forum?id=6FoIDPKzRV"
)

PAPER_MSN = (
    "Assran et al., Masked Siamese Networks for Label-Efficient Learning, ECCV 2022, arXiv:2204.07141"
)

CAFORMER_REPO = "TimJaspersTue/SurgeNetModels"
VIT_REPO = "rlpddejong/SurgeNetXL_DINOv1-v3"


@dataclass(frozen=True)
class ModelEntry:
    """Everything we know about one released checkpoint.

    ``mean``/``std`` are the default normalisation: the ImageNet statistics with which the DINO
    pretraining crops were normalised, i.e. the input distribution the weights were trained on.
    ``alt_normalization`` keeps the surgical statistics of the authors' downstream benchmark,
    selectable with ``create_transform(..., normalization="surgical")``.
    """

    name: str
    arch: str
    family: str  # caformer | convnextv2 | pvtv2 | vit
    repo_id: str
    filename: str
    layout: str  # key layout of the released file: metaformer | convnextv2 | pvtv2 | dinov1 | dinov2 | dinov3
    pretraining_data: str
    pretraining_frames: int | None
    paper: str
    description: str
    revision: str = "main"
    input_size: tuple[int, int, int] = (3, 256, 256)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    alt_normalization: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = field(
        default_factory=lambda: {"surgical": (SURGICAL_MEAN, SURGICAL_STD)}
    )
    license: str = CC_BY_NC_SA
    pretraining_method: str = "DINO"
    epochs: int = 50
    full_checkpoint: str | None = None  # the full DINO checkpoint beside the teacher file
    num_params: int = 0  # backbone parameters, checked against the built network by the tests
    gflops_256: float | None = None  # per frame at 256x256, measured (benchmarks/flops.py)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["alt_normalization"] = {k: [list(m), list(s)] for k, (m, s) in self.alt_normalization.items()}
        return d


_SOURCES = {
    "surgenetxl": ("SurgeNetXL: 4,711,024 frames at 1 fps from more than 4,598 surgical videos "
                   "(public datasets, two private collections and 2,074,234 frames of surgical YouTube "
                   "videos covering 23 procedures)", 4_711_024),
    "surgenet": ("SurgeNet: 2,636,790 frames, SurgeNetXL without the YouTube videos", 2_636_790),
    "surgenet-small": ("SurgeNetSmall: 263,679 frames, 10% of SurgeNet", 263_679),
    "surgenet-public": ("SurgeNetPublic: 1,997,987 frames from public datasets only", 1_997_987),
    "surgenet-cholec": ("SurgeNetCholec: 250,655 frames of laparoscopic cholecystectomy "
                        "(Cholec80, HeiChole, hSDB-Chole)", 250_655),
    "surgenet-ramie": ("SurgeNetRAMIE: 377,287 frames of robot-assisted minimally invasive "
                       "esophagectomy (RAMIE-UMCU)", 377_287),
    "surgenet-rarp": ("SurgeNetRARP: 382,416 frames of robot-assisted surgery (ESAD, PSI-AVA, "
                      "RARP-AvL)", 382_416),
}


def _caformer(name: str, source: str, stem: str, paper: str, filename: str | None = None) -> ModelEntry:
    data, frames = _SOURCES[source]
    return ModelEntry(
        name=name, arch="caformer_s18_surgenet", family="caformer", repo_id=CAFORMER_REPO,
        filename=filename or f"{stem}_checkpoint_epoch0050_teacher.pth", layout="metaformer",
        full_checkpoint=f"{stem}_checkpoint0050.pth", pretraining_data=data, pretraining_frames=frames,
        paper=paper, num_params=23_237_888, gflops_256=10.9,
        description=f"CAFormer-S18 (SurgeNet flavour, ReLU) DINO teacher pretrained on {data.split(':')[0]}.",
    )


def _vit(name: str, arch: str, filename: str, layout: str, size: int, params: int,
         gflops: float | None, desc: str) -> ModelEntry:
    data, frames = _SOURCES["surgenetxl"]
    return ModelEntry(
        name=name, arch=arch, family="vit", repo_id=VIT_REPO, filename=filename, layout=layout,
        input_size=(3, size, size), pretraining_data=data, pretraining_frames=frames,
        paper=PAPER_SURGENET_DINO, pretraining_method=layout.replace("dino", "DINO").replace("DINOv1", "DINO (v1)"),
        num_params=params, gflops_256=gflops, description=desc,
    )


_ENTRIES: tuple[ModelEntry, ...] = (
    _caformer("surgenetxl-caformer", "surgenetxl", "SurgeNetXL", PAPER_SURGENETXL),
    _caformer("surgenet-caformer", "surgenet", "SurgeNet", PAPER_SURGENET),
    _caformer("surgenet-small-caformer", "surgenet-small", "SurgeNetSmall", PAPER_SURGENET),
    # The official loader points at Public_checkpoint0050.pth (the full DINO checkpoint); we
    # serve the teacher file, which holds the same teacher weights in the flat layout.
    _caformer("surgenet-public-caformer", "surgenet-public", "Public", PAPER_SURGENET),
    _caformer("surgenet-cholec-caformer", "surgenet-cholec", "CHOLEC", PAPER_SURGENET),
    _caformer("surgenet-ramie-caformer", "surgenet-ramie", "RAMIE", PAPER_SURGENET),
    _caformer("surgenet-rarp-caformer", "surgenet-rarp", "RARP", PAPER_SURGENET),
    ModelEntry(
        name="surgenet-convnextv2", arch="convnextv2_tiny", family="convnextv2", repo_id=CAFORMER_REPO,
        filename="SurgeNet_ConvNextv2_checkpoint_epoch0050_teacher.pth", layout="convnextv2",
        full_checkpoint="SurgeNet_ConvNextv2_checkpoint0050.pth",
        pretraining_data=_SOURCES["surgenet"][0], pretraining_frames=_SOURCES["surgenet"][1],
        paper=PAPER_SURGENETXL, num_params=27_866_496, gflops_256=11.6,
        description="ConvNeXtV2-tiny DINO teacher pretrained on SurgeNet.",
    ),
    ModelEntry(
        name="surgenet-pvtv2", arch="pvt_v2_b2", family="pvtv2", repo_id=CAFORMER_REPO,
        filename="SurgeNet_PVTv2_checkpoint_epoch0050_teacher.pth", layout="pvtv2",
        full_checkpoint="SurgeNet_PVTv2_checkpoint0050.pth",
        pretraining_data=_SOURCES["surgenet"][0], pretraining_frames=_SOURCES["surgenet"][1],
        paper=PAPER_SURGENETXL, num_params=24_849_856, gflops_256=10.6,
        description="PVTv2-B2 DINO teacher pretrained on SurgeNet.",
    ),
    _vit("surgenetxl-dinov1-vits16", "vit_small_patch16_dinov1", "DINOv1_ViTs16_size224_SurgeNetXL.pth",
         "dinov1", 224, 21_665_664, 12.3, "ViT-S/16 pretrained with DINO (v1) on SurgeNetXL at 224 px."),
    _vit("surgenetxl-dinov1-vitb16", "vit_base_patch16_dinov1", "DINOv1_ViTb16_size224_SurgeNetXL.pth",
         "dinov1", 224, 85_798_656, 46.4, "ViT-B/16 pretrained with DINO (v1) on SurgeNetXL at 224 px."),
    _vit("surgenetxl-dinov2-vits14", "vit_small_patch14_reg4_dinov2", "DINOv2_ViTs14_size336_SurgeNetXL.pth",
         "dinov2", 336, 21_752_832, 18.2, "ViT-S/14 with 4 registers pretrained with DINOv2 on SurgeNetXL at 336 px."),
    _vit("surgenetxl-dinov2-vitb14", "vit_base_patch14_reg4_dinov2", "DINOv2_ViTb14_size336_SurgeNetXL.pth",
         "dinov2", 336, 85_972_992, 67.4, "ViT-B/14 with 4 registers pretrained with DINOv2 on SurgeNetXL at 336 px."),
    _vit("surgenetxl-dinov2-vitl14", "vit_large_patch14_reg4_dinov2", "DINOv2_ViTl14_size336_SurgeNetXL.pth",
         "dinov2", 336, 303_558_656, 234.7, "ViT-L/14 with 4 registers pretrained with DINOv2 on SurgeNetXL at 336 px."),
    _vit("surgenetxl-dinov3-vits16", "vit_small_patch16_dinov3_surgenet", "DINOv3_ViTs16_size336_SurgeNetXL.pth",
         "dinov3", 336, 21_599_232, 12.3, "ViT-S/16 with RoPE pretrained with DINOv3 on SurgeNetXL at 336 px."),
    _vit("surgenetxl-dinov3-vitb16", "vit_base_patch16_dinov3_surgenet", "DINOv3_ViTb16_size336_SurgeNetXL.pth",
         "dinov3", 336, 85_665_792, 46.4, "ViT-B/16 with RoPE pretrained with DINOv3 on SurgeNetXL at 336 px."),
    _vit("surgenetxl-dinov3-vitl16", "vit_large_patch16_dinov3_surgenet", "DINOv3_ViTl16_size336_SurgeNetXL.pth",
         "dinov3", 336, 303_149_056, 162.1, "ViT-L/16 with RoPE pretrained with DINOv3 on SurgeNetXL at 336 px."),
    # Not a SurgeNet model: Meta's ImageNet MSN ViT-S/16, the usual starting point of surgical MSN runs
    # (Hirsch et al.'s endoscopic MSN recipe; transformers layout).
    ModelEntry(
        name="vit-msn-small", arch="vit_small_patch16_msn", family="vit", repo_id="facebook/vit-msn-small",
        filename="pytorch_model.bin", layout="vit_msn", input_size=(3, 224, 224),
        pretraining_data="ImageNet-1K: 1.28M natural images, labels unused", pretraining_frames=None,
        paper=PAPER_MSN, pretraining_method="MSN", epochs=600, license="apache-2.0",
        num_params=21_665_664, gflops_256=12.3,
        description="ViT-S/16 pretrained with MSN on ImageNet-1K by Meta AI (a general-domain starting point "
                    "for surgical MSN pretraining, as in the endoscopic MSN recipe of Hirsch et al.).",
    ),
)


def input_size_for(entry: ModelEntry, network_kwargs: dict[str, Any] | None = None) -> list[int]:
    """The (3, H, W) a network of ``entry`` is fed: the entry's, unless ``img_size`` rebuilt it.

    A ViT pretrained with ``network_kwargs={img_size: 32}`` has position embeddings for 32x32; its
    default transform must resize there, not to the released model's 224.
    """
    size = (network_kwargs or {}).get("img_size")
    if size is None:
        return list(entry.input_size)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return [entry.input_size[0], int(height), int(width)]


def _build_table(entries: tuple[ModelEntry, ...]) -> dict[str, ModelEntry]:
    table: dict[str, ModelEntry] = {}
    for entry in entries:
        if entry.name in table:
            raise ValueError(f"duplicate registry name {entry.name!r}")
        table[entry.name] = entry
    return table


REGISTRY: dict[str, ModelEntry] = _build_table(_ENTRIES)


def list_models(pattern: str | None = None, family: str | None = None) -> list[str]:
    """Names of the released models, optionally filtered by a glob ``pattern`` or a ``family``."""
    names = [n for n, e in REGISTRY.items() if family is None or e.family == family]
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n, pattern)]
    return names


def get_entry(name: str) -> ModelEntry:
    """The registry record of ``name``; a timm architecture name (``resnet50``) gives a record
    without released weights; an unknown name raises with the closest names."""
    try:
        return REGISTRY[name]
    except KeyError:
        pass
    normalised = name.lower().replace("_", "-")
    if normalised in REGISTRY:
        return REGISTRY[normalised]
    timm_entry = _timm_entry(name)
    if timm_entry is not None:
        return timm_entry
    close = difflib.get_close_matches(normalised, list(REGISTRY), n=3, cutoff=0.5)
    close += _close_timm_names(name)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} See surgenet.list_models() for all {len(REGISTRY)} names, "
        "or pass a timm architecture name (timm.list_models())."
    )


TIMM_LAYOUT = "timm"


def _timm_entry(name: str) -> ModelEntry | None:
    """A record for a timm architecture name: random or user-given weights, ImageNet statistics.

    timm is imported only here, when a name is not in the zoo (``import surgenet`` stays light).
    """
    if not isinstance(name, str) or not name or "/" in name or "\\" in name:
        return None
    from .backbones.architectures import is_timm_architecture

    if not is_timm_architecture(name):
        return None
    return ModelEntry(
        name=name, arch=name, family="timm", repo_id="", filename="", layout=TIMM_LAYOUT,
        pretraining_data="none: a timm architecture without released surgenet weights", pretraining_frames=None,
        paper="", description=f"timm architecture {name} (random weights unless weights= names a file)",
        input_size=(3, 224, 224), license="", pretraining_method="none", epochs=0,
    )


def is_released(entry: ModelEntry) -> bool:
    """Whether ``entry`` has weights on the Hub (zoo entries) or only user weights (timm names)."""
    return entry.layout != TIMM_LAYOUT


def _close_timm_names(name: str) -> list[str]:
    try:
        import timm
    except ImportError:  # pragma: no cover - timm is a core dependency
        return []
    names = timm.list_models()
    return difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.75)


def model_info(name: str) -> dict[str, Any]:
    """The registry record of ``name`` as a plain dict (repo_id, filename, revision, mean, ...)."""
    return get_entry(name).to_dict()
