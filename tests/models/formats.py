"""Tiny models written in the exact on-disk formats the medical CLIPs are published in.

- :func:`write_open_clip_hub_model`: what ``microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224``
  holds (``open_clip_config.json`` naming a timm ViT and a Hugging Face BERT text tower by hub id,
  ``open_clip_pytorch_model.bin``), with the BERT repo's config and tokenizer as a second repo;
  or QuiltNet's (an open_clip ViT with CLIP's own text transformer).
- :func:`write_transformers_clip` / :func:`write_transformers_siglip`: ``save_pretrained`` folders
  of ``CLIPModel`` / ``SiglipModel`` with their tokenizer and image processor (PubMedCLIP, PLIP,
  MedSigLIP).
- :func:`write_openai_torchscript`: a TorchScript archive shaped like OpenAI's ``ViT-B-32.pt``.
- :func:`put_in_hub_cache`: a folder as huggingface_hub caches it (``models--org--name/blobs``,
  ``snapshots/<commit>`` links, ``refs/main``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

TINY_BERT_WORDS = (
    "[PAD] [UNK] [CLS] [SEP] [MASK] a an the of in on this is photo image medical ct mri x ray scan "
    "brain chest head lung liver bone lesion tumor normal axial sagittal coronal plane with no"
).split()
CLIP_VOCAB = [
    "l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "lo", "l</w>", "w</w>", "r</w>", "t</w>",
    "low</w>", "er</w>", "lowest</w>", "newer</w>", "wider", "<unk>", "<|startoftext|>", "<|endoftext|>",
]  # fmt: skip
CLIP_MERGES = ["#version: 0.2", "l o", "lo w</w>", "e r</w>"]
REVISION = "0123456789abcdef0123456789abcdef01234567"


def put_in_hub_cache(cache: Path, repo_id: str, files: Path, revision: str = REVISION) -> Path:
    """Copy ``files`` into the hub cache layout; returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / revision
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    for f in sorted(files.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / f.name
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs" / "main").write_text(revision)
    return snapshot


def write_tiny_bert(folder: Path) -> Path:
    """A BERT text tower's config and WordPiece tokenizer, saved with transformers."""
    from transformers import BertConfig, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder.parent / f"{folder.name}-vocab.txt"
    vocab.write_text("\n".join(TINY_BERT_WORDS) + "\n")
    BertTokenizer(str(vocab), do_lower_case=True).save_pretrained(folder)
    BertConfig(
        vocab_size=len(TINY_BERT_WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=37, max_position_embeddings=64,
    ).save_pretrained(folder)  # fmt: skip
    vocab.unlink()
    return folder


def biomedclip_like_config(text_repo: str) -> dict:
    """BiomedCLIP's open_clip_config.json, scaled down (a timm ViT, a BERT tower by hub id)."""
    return {
        "model_cfg": {
            "embed_dim": 16,
            "vision_cfg": {
                "timm_model_name": "test_vit",  # timm's own CI-sized ViT
                "timm_model_pretrained": False,
                "timm_pool": "",
                "timm_proj": "linear",
                "image_size": 160,
            },
            "text_cfg": {
                "hf_model_name": text_repo,
                "hf_tokenizer_name": text_repo,
                "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler",
                "context_length": 24,
            },
        },
        "preprocess_cfg": {"mean": [0.4815, 0.4578, 0.4082], "std": [0.2686, 0.2613, 0.2758]},
    }


def quiltnet_like_config() -> dict:
    """QuiltNet's config, scaled down: open_clip's own ViT and CLIP text transformer."""
    return {
        "model_cfg": {
            "embed_dim": 16,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        },
        "preprocess_cfg": {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
    }


def write_open_clip_hub_model(folder: Path, config: dict, text_tower: Path | None = None, seed: int = 0) -> Path:
    """``open_clip_config.json`` + ``open_clip_pytorch_model.bin`` (a plain state dict, as published).

    ``text_tower``: a local folder with the HF text tower's config, used only to build the weights.
    """
    from open_clip.model import CLIP, CustomTextCLIP

    folder.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(json.dumps(config["model_cfg"]))
    torch.manual_seed(seed)
    if "hf_model_name" in cfg["text_cfg"]:
        cfg["text_cfg"].update(hf_model_name=str(text_tower), hf_tokenizer_name=str(text_tower), hf_model_pretrained=False)
        model = CustomTextCLIP(**cfg)
    else:
        model = CLIP(**cfg)
    with torch.no_grad():  # a logit scale other than the init value shows it is read from the file
        model.logit_scale.fill_(3.1)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return folder


def _clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = folder / "_vocab.json", folder / "_merges.txt"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(CLIP_VOCAB)}))
    merges.write_text("\n".join(CLIP_MERGES) + "\n")
    tokenizer = CLIPTokenizer(str(vocab), str(merges))
    vocab.unlink()
    merges.unlink()
    return tokenizer


def write_transformers_clip(folder: Path, seed: int = 0) -> Path:
    """A ``CLIPModel`` saved with ``save_pretrained``, its CLIP tokenizer and image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = _clip_tokenizer(folder)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(CLIP_VOCAB), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=24, hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
            patch_size=8, hidden_act="quick_gelu",
        ),
        projection_dim=16,
        logit_scale_init_value=2.9,
    )  # fmt: skip
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def write_transformers_siglip(folder: Path, seed: int = 0, model_input_names=("input_ids",)) -> Path:
    """A ``SiglipModel`` saved with ``save_pretrained``, a fast tokenizer and SigLIP's image processor."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, SiglipConfig, SiglipImageProcessor, SiglipModel

    folder.mkdir(parents=True, exist_ok=True)
    words = ["<pad>", "</s>", "<unk>", *TINY_BERT_WORDS[5:]]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    # Like SiglipTokenizer: input ids only (the model reads no attention mask) unless asked for one.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        model_input_names=list(model_input_names),
    )  # fmt: skip
    config = SiglipConfig(
        text_config=dict(
            vocab_size=len(words), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=16, pad_token_id=0, bos_token_id=1, eos_token_id=1,
        ),
        vision_config=dict(
            hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
            patch_size=8,
        ),
    )  # fmt: skip
    torch.manual_seed(seed)
    model = SiglipModel(config)
    with torch.no_grad():  # SigLIP's published init: scale log(10), bias -10; moved so both are read back
        model.logit_scale.fill_(2.5)
        model.logit_bias.fill_(-3.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def write_openai_torchscript(path: Path, seed: int = 0) -> Path:
    """A traced CLIP saved with ``torch.jit.save``, carrying OpenAI's scalar entries
    (``input_resolution``, ``context_length``, ``vocab_size``) beside the weights, as ``ViT-B-32.pt`` does."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=32,
        vision_cfg=CLIPVisionCfg(layers=2, width=64, patch_size=8, image_size=32),
        text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=2),
        quick_gelu=True,
    ).eval()
    for name, value in (("input_resolution", 32), ("context_length", 77), ("vocab_size", 49408)):
        if hasattr(model, name):
            delattr(model, name)
        model.register_buffer(name, torch.tensor(value))
    # OpenAI's archives store convolutions, linear layers, attention and projections in float16.
    from open_clip.model import convert_weights_to_fp16

    convert_weights_to_fp16(model)
    half = {k for k, v in model.state_dict().items() if v.dtype == torch.float16}
    model.float()
    # OpenAI's model keeps its causal mask as a plain attribute: not an entry of the state dict.
    mask = model._buffers.pop("attn_mask")
    object.__setattr__(model, "attn_mask", mask)
    images, tokens = torch.ones(2, 3, 32, 32), torch.zeros(2, 77, dtype=torch.int)
    # The three methods OpenAI's archives expose, traced as open_clip's ``trace_model`` does.
    traced = torch.jit.trace_module(
        model, {"forward": (images, tokens), "encode_text": (tokens,), "encode_image": (images,)}
    )
    with torch.no_grad():
        for name, param in traced.named_parameters():
            if name in half:
                param.data = param.data.half()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(traced, str(path))
    return path
