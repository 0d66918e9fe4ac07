"""The medical CLIPs reviewers ask about, by short name: ``--model biomedclip``, ``medclip weights
fetch pubmedclip``. Each is a complete published model loaded from its hub repository (the hub
cache when offline); licences and citations are those of the model cards."""

from __future__ import annotations

from medclip_cli import hookimpl
from medclip_cli.encoders import EncoderSpec, TowerConfig

#: name, hub id, format, family, embed dim, input size, context length, licence, citation, what it is
MEDICAL_CLIPS = (
    (
        "biomedclip", "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "open_clip", "vit",
        512, 224, 256, "MIT",
        "Zhang et al. 2023, BiomedCLIP, arXiv:2303.00915",
        "ViT-B/16 + PubMedBERT trained on PMC-15M figure-caption pairs",
    ),
    (
        "quiltnet", "wisdomik/QuiltNet-B-32", "open_clip", "vit",
        512, 224, 77, "MIT",
        "Ikezogwo et al. 2023, Quilt-1M, NeurIPS Datasets and Benchmarks, arXiv:2306.11207",
        "CLIP ViT-B/32 fine-tuned on Quilt-1M histopathology",
    ),
    (
        "pubmedclip", "flaviagiammarino/pubmed-clip-vit-base-patch32", "transformers", "vit",
        512, 224, 77, "MIT",
        "Eslami et al. 2023, PubMedCLIP, Findings of EACL, arXiv:2112.13906",
        "CLIP ViT-B/32 fine-tuned on ROCO radiology figures",
    ),
    (
        "plip", "vinid/plip", "transformers", "vit",
        512, 224, 77, "see the model card (research use)",
        "Huang et al. 2023, Nature Medicine 29:2307-2316",
        "CLIP ViT-B/32 fine-tuned on OpenPath pathology images from medical Twitter",
    ),
    (
        "medsiglip", "google/medsiglip-448", "transformers", "vit",
        1152, 448, 64, "Health AI Developer Foundations terms (gated: accept them, set HF_TOKEN)",
        "Sellergren et al. 2025, MedGemma Technical Report, arXiv:2507.05201",
        "SigLIP-400M adapted to medical images; sigmoid scoring with a learned bias",
    ),
)


def _whole_model(name: str):
    def build(tag: str | None) -> TowerConfig:
        from medclip_cli.errors import UsageError

        raise UsageError(
            f"{name} is a complete model with its own text tower and tokenizer",
            hint=f"use it alone: --model {name}",
        )

    return build


@hookimpl
def register_encoders(register):
    for name, hub_id, fmt, family, embed, size, context, licence, citation, what in MEDICAL_CLIPS:
        register(
            EncoderSpec(
                name=name,
                kind="clip",
                family=family,
                build=_whole_model(name),
                embed_dim=embed,
                image_size=size,
                context_length=context,
                description=what,
                hub_id=hub_id,
                model_format=fmt,
                licence=licence,
                citation=citation,
            )
        )
