"""Start-up and latency: ``medclip --help``, and classifying one image in a cold process.

Side by side with what a user would otherwise run:
- ``medclip --help`` vs ``clip_benchmark --help`` (the evaluation CLI of the anchors);
- ``medclip classify IMAGE --model BUNDLE`` (ViT-B/32 bundle) vs a minimal script that imports
  open_clip, builds the same model from the same folder (``local-dir:``), encodes the image and
  the labels, and prints the softmax — the least a user would write by hand.

Each figure is the median wall time of ``--rounds`` cold processes, all measured in one run.

    python benchmarks/startup_latency.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MINIMAL_SCRIPT = textwrap.dedent(
    """
    import sys
    import open_clip, torch
    from PIL import Image
    bundle, image, labels = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{bundle}")
    tokenizer = open_clip.get_tokenizer(f"local-dir:{bundle}")
    model.eval()
    with torch.no_grad():
        img = model.encode_image(preprocess(Image.open(image).convert("RGB")).unsqueeze(0))
        txt = model.encode_text(tokenizer([f"Medical image of {l}" for l in labels]))
        img = img / img.norm(dim=-1, keepdim=True)
        txt = txt / txt.norm(dim=-1, keepdim=True)
        print((model.logit_scale.exp() * img @ txt.T).softmax(dim=-1).tolist())
    """
)


def _time(cmd: list[str], rounds: int, env: dict) -> tuple[float, list[float]]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--encoder", default="vit-b-32")
    parser.add_argument("--image", type=Path, default=None, help="default: a MedPix PNG, else a generated one")
    args = parser.parse_args()

    from PIL import Image

    from medclip_cli.models import resolve_model
    from medclip_cli.models.bundle import save_bundle

    work = Path(tempfile.mkdtemp(prefix="medclip-startup-"))
    env = {**os.environ, "MEDCLIP_HOME": str(work / "home"), "HF_HUB_OFFLINE": "1"}
    try:
        bundle = work / "bundle"
        save_bundle(resolve_model(encoder=args.encoder), bundle)
        image = args.image
        if image is None:
            medpix = REPO.parent / "shared" / "medpix2" / "MedPix-2-0" / "images"
            image = next(medpix.glob("*.png"), None) if medpix.is_dir() else None
        if image is None:
            image = work / "scan.png"
            Image.new("L", (256, 256), 100).save(image)
        labels = "brain MRI,chest X-ray,abdominal CT"
        (work / "minimal.py").write_text(MINIMAL_SCRIPT)
        medclip = [sys.executable, "-m", "medclip_cli.cli"]
        clip_benchmark = shutil.which("clip_benchmark") or str(Path(sys.executable).with_name("clip_benchmark"))
        rows = []
        help_ours, _ = _time([*medclip, "--help"], args.rounds, env)
        help_theirs, _ = _time([clip_benchmark, "--help"], args.rounds, env)
        rows.append(("--help", "medclip --help", help_ours, "clip_benchmark --help", help_theirs))
        ours, _ = _time([*medclip, "classify", str(image), "--labels", labels, "--model", str(bundle), "--json"], args.rounds, env)
        theirs, _ = _time([sys.executable, str(work / "minimal.py"), str(bundle), str(image), labels], args.rounds, env)
        rows.append(("classify 1 image", f"medclip classify ({args.encoder} bundle)", ours, "open_clip minimal script", theirs))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    import platform

    import torch

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}; torch {torch.__version__}")
    print(f"median of {args.rounds} cold processes each; lower is better; ratio = other / medclip")
    print(f"{'what':<18} {'medclip':>10} {'other':>10} {'ratio':>7}  other tool")
    for what, _, mine, other_name, other in rows:
        print(f"{what:<18} {mine:>9.3f}s {other:>9.3f}s {other / mine:>6.2f}x  {other_name}")


if __name__ == "__main__":
    main()
