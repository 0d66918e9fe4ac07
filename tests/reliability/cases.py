"""The bad-input contract: one row per case (what is wrong, the command, the outcome a user sees).

Each row's ``build`` writes its input under the case's own folder and returns the command line.
``exit_code`` 1 is a refused input, 2 a usage error, 0 an input that is accepted or skipped
(then ``message`` must appear in the report). docs/RELIABILITY.md is rendered from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tests.reliability import inputs as make

AREAS = ("images", "data sets", "options", "prompt templates", "downloads and archives", "checkpoints and plugins",
         "run folders and results")


@dataclass(frozen=True)
class Case:
    id: str
    area: str
    input: str  # what is wrong, in words
    command: str  # the command as the docs show it
    build: Callable[["Env"], list[str]]
    exit_code: int
    message: str  # on stderr (refused) or in the report (accepted / skipped)
    output: str | None = None  # an output folder (relative to the case folder) that must hold no partial files
    report: bool = False  # the command reports every problem it finds (data check, several images)

    @property
    def outcome(self) -> str:
        if self.report:
            return "reported" + (", exit 1" if self.exit_code else "")
        return {0: "accepted", 1: "refused", 2: "usage error"}.get(self.exit_code, str(self.exit_code))


class Env:
    """A case's folder plus the shared helpers (an HTTP server, prepared model bundles)."""

    def __init__(self, tmp: Path, monkeypatch, server=None, bundles: dict[str, Path] | None = None) -> None:
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self._server = server
        self._bundles = bundles or {}

    def p(self, name: str) -> Path:
        return self.tmp / name

    def serve(self, payload: bytes, cut_after: int | None = None) -> None:
        self._server.payload, self._server.cut_after = payload, cut_after
        self.monkeypatch.setenv("MEDCLIP_MEDPIX_URL", self._server.url)

    def bundle(self, name: str) -> Path:
        import shutil

        target = self.tmp / name
        shutil.copytree(self._bundles[name], target)
        return target

    def plugin(self, name: str, source: str) -> None:
        from medclip_cli import plugins

        site = make.fake_plugin(self.tmp / "site", name, source)
        self.monkeypatch.syspath_prepend(str(site))
        plugins.reset()


# -- command lines --------------------------------------------------------------------------------


def classify(image: Path, *extra: str) -> list[str]:
    return ["classify", str(image), "--labels", "a,b", "--encoder", "test-vit", "--device", "cpu", *extra]


def finetune(env: Env, *extra: str, data: Path | None = None) -> list[str]:
    if data is None:
        data = make.csv_set(env.p("data"))
    return [
        "finetune", "--encoder", "test-vit", "--data", str(data), "--output", str(env.p("run")), "--val-split", "none",
        "--epochs", "1", "--batch-size", "2", "--max-steps", "1", "--device", "cpu", *extra,
    ]  # fmt: skip


def evaluate(env: Env, *extra: str, data: Path | None = None) -> list[str]:
    if data is None:
        data = make.medpix_set(env.p("data"))
    return [
        "evaluate", "--data", str(data), "--split", "test", "--encoder", "test-vit", "--task", "modality",
        "--device", "cpu", "--no-cache", *extra,
    ]  # fmt: skip


def check(path: Path, *extra: str) -> list[str]:
    return ["data", "check", str(path), *extra]


def _openi(env: Env) -> Path:
    """An OpenI copy as `data download openi` leaves it: with its split manifest, which the first
    read of a copy writes (deliberately: it is the data set's split, not a command's output)."""
    from medclip_cli.data.openi import manifest_for
    from tests.data.openi_copy import write_openi

    root = write_openi(env.p("openi"))
    manifest_for(root)
    return root


def _openi_with_report(env: Env, name: str, text: str) -> Path:
    root = _openi(env)
    (root / "ecgen-radiology" / name).write_text(text, encoding="utf-8")
    return root


def _openi_without_image(env: Env, image_id: str) -> Path:
    root = _openi(env)
    (root / "NLMCXR_png" / f"{image_id}.png").unlink()
    return root


def embed(env: Env, data: Path, *extra: str) -> list[str]:
    return ["embed", "--data", str(data), "--encoder", "test-vit", "--device", "cpu", "-o", str(env.p("emb.parquet")), *extra]


def _embed_then_other_model(env: Env) -> list[str]:
    args = embed(env, make.medpix_set(env.p("data")))
    assert _run_quiet(args) == 0
    return [*args, "--encoder", "test-resnet"]


def _two_splits(env: Env, train_kinds: list[str] | None = None) -> Path:
    kinds = train_kinds or ["CT", "MR", "CT", "MR"]
    train = [{"image": f"MPX{i}_t", "modality": k, "caption": f"case {i}"} for i, k in enumerate(kinds)]
    make.medpix_set(env.p("data"), "train", train)
    return make.medpix_set(env.p("data"), "test")


def probe(env: Env, data: Path, *extra: str) -> list[str]:
    return [
        "probe", "--data", str(data), "--train-split", "train", "--eval-split", "test", "--task", "modality",
        "--shots", "1,2", "--repeats", "2", "--encoder", "test-vit", "--device", "cpu", *extra,
    ]  # fmt: skip


def _image_case(id: str, input: str, writer, exit_code: int, message: str, name: str = "scan.png") -> Case:
    return Case(id, "images", input, f"classify {name} --labels a,b", lambda env: classify(writer(env.p(name))),
                exit_code, message)


def _medpix_with_bad_image(env: Env) -> Path:
    root = make.medpix_set(env.p("data"), n=4)
    make.write(root / "MedPix-2-0" / "images" / "MPX1_a.png", b"this is not a PNG")
    return root


def _csv_with_bad_image(env: Env) -> Path:
    path = make.csv_set(env.p("data"))
    make.write(env.p("data") / "img" / "a1.png", b"")
    return path


def _model_of_another_architecture(env: Env) -> Path:
    vit, resnet = env.bundle("vit-bundle"), env.bundle("resnet-bundle")
    (vit / "model.safetensors").write_bytes((resnet / "model.safetensors").read_bytes())
    _record_checksum(vit)  # the bundle's own record agrees: the architecture check is what refuses it
    return vit


def _record_checksum(bundle: Path) -> None:
    import json

    from medclip_cli.models.bundle import _sha256

    config = json.loads((bundle / "open_clip_config.json").read_text())
    config["medclip"]["weights_sha256"] = _sha256(bundle / "model.safetensors")
    (bundle / "open_clip_config.json").write_text(json.dumps(config))


def _evil_checkpoint(env: Env) -> list[str]:
    args = finetune(env, "--checkpoint-every", "1")
    assert _run_quiet(args) == 0
    state = next((env.p("run") / "checkpoints").glob("step-*")) / "training_state.pt"
    make.pickle_that_runs_code(state, env.p("pwned"))
    return ["finetune", "--output", str(env.p("run")), "--resume"]


def _run_quiet(args: list[str]) -> int:
    from typer.testing import CliRunner

    from medclip_cli.cli import app

    return CliRunner().invoke(app, args).exit_code


def _earlier_run_then(env: Env, *extra: str) -> list[str]:
    args = finetune(env)
    assert _run_quiet(args) == 0
    return [*args, *extra]


def _not_a_folder(env: Env) -> Path:
    return make.write(env.p("taken"), "a file where a folder should go")


_DUP_PLUGIN = """
from medclip_cli import hookimpl
from medclip_cli.encoders import EncoderSpec, TowerConfig

@hookimpl
def register_encoders(register):
    cfg = lambda tag: TowerConfig(vision_cfg={"image_size": 32, "layers": 1, "width": 32, "patch_size": 8}, embed_dim=32)
    register(EncoderSpec(name="test-vit", kind="image", family="vit", build=cfg, embed_dim=32))
"""

_WRONG_HOOK = """
from medclip_cli import hookimpl

@hookimpl
def register_encoders(register, not_an_argument):
    pass
"""

_MEDPIX_ZIP_OK = {"MedPix-2.0-main/README.md": b"MedPix"}


CASES: list[Case] = [
    # -- images ---------------------------------------------------------------------------------
    _image_case("image-zero-bytes", "zero-byte PNG", lambda p: make.write(p, b""), 1, "scan.png: empty file"),
    _image_case("image-truncated", "truncated PNG", make.truncated_png, 1, "scan.png: corrupt or truncated image"),
    _image_case("image-not-an-image", "text bytes with a .png extension", lambda p: make.write(p, b"hello, world\n" * 20),
                1, "scan.png: not a readable image"),
    _image_case("image-1x1", "1×1 pixel PNG", lambda p: make.png(p, size=(1, 1)), 0, "probability"),
    _image_case("image-huge-header", "PNG header claiming 60,000×60,000 pixels", make.huge_header_png, 1,
                "scan.png: image is too large to decode safely"),
    _image_case("image-16-bit", "16-bit grayscale PNG", make.png16, 0, "probability"),
    _image_case("image-cmyk-jpeg", "CMYK JPEG", make.cmyk_jpeg, 0, "probability", name="scan.jpg"),
    _image_case("image-palette-transparency", "palette PNG with a transparent colour", make.palette_png_transparent, 0,
                "probability"),
    _image_case("image-animated-gif", "animated GIF (first frame used)", make.animated_gif, 0, "probability", name="scan.gif"),
    _image_case("image-dicom-no-pixels", "DICOM without pixel data", make.dicom_without_pixels, 1,
                "scan.dcm: DICOM file has no pixel data", name="scan.dcm"),
    _image_case("image-dicom-no-decoder", "JPEG 2000 DICOM, no decoder installed", make.dicom_jpeg2000, 1,
                "scan.dcm: cannot decode DICOM pixel data", name="scan.dcm"),
    _image_case("image-dicom-garbage", "random bytes with a .dcm extension", lambda p: make.write(p, b"\x00garbage" * 50),
                1, "scan.dcm: not a readable DICOM file", name="scan.dcm"),
    _image_case("image-missing", "image path that does not exist", lambda p: p, 1, "scan.png: no such image file"),
    _image_case("image-folder", "a folder given as the image", lambda p: (p.mkdir(), p)[1], 1, "scan.png: is a folder"),
    Case("image-one-bad-of-two", "images", "one unreadable image among good ones", "classify good.png bad.png --labels a,b",
         lambda env: classify(make.png(env.p("good.png"))) + [str(make.write(env.p("bad.png"), b""))], 1,
         "bad.png: empty file", report=True),
    Case("image-bad-in-eval-set", "images", "one unreadable image inside an evaluation set",
         "evaluate --data DIR --task modality --json",
         lambda env: evaluate(env, "--json", data=_medpix_with_bad_image(env)), 0, "MPX1_a"),
    Case("image-bad-in-training-set", "images", "one empty image inside a training set (skipped)",
         "finetune --data pairs.csv ...", lambda env: finetune(env, data=_csv_with_bad_image(env)), 0,
         "skipped 1 unreadable image"),
    Case("image-bad-in-training-set-strict", "images", "one empty image inside a training set with --strict",
         "finetune --data pairs.csv --strict ...", lambda env: finetune(env, "--strict", data=_csv_with_bad_image(env)),
         1, "a1.png: empty file", output="run"),
    Case("image-bad-in-checked-set", "images", "one unreadable image reported by data check", "data check DIR",
         lambda env: check(_medpix_with_bad_image(env)), 1, "MPX1_a.png: not a readable image", report=True),
    # -- data sets ------------------------------------------------------------------------------
    Case("data-missing-descriptions-json", "data sets", "MedPix layout without Descriptions.json (split all)",
         "data check DIR --split all", lambda env: check(make.medpix_set(env.p("data")), "--split", "all"), 1,
         "Descriptions.json: missing"),
    Case("data-medpix-malformed-line", "data sets", "malformed JSONL line 3 in a MedPix split", "data check DIR",
         lambda env: check(make.medpix_set(env.p("data"), raw_lines=['{"image": "a"}', '{"image": "b"}', '{"image": '])),
         1, "descriptions_test.jsonl:3: malformed JSON line"),
    Case("data-jsonl-malformed-line", "data sets", "malformed JSONL line 2", "data check pairs.jsonl",
         lambda env: check(make.jsonl_set(env.p("data"), ['{"image": "img/a0.png", "caption": "x"}', "{oops"])), 1,
         "pairs.jsonl line 2: malformed JSON"),
    Case("data-jsonl-not-object", "data sets", "JSONL line that is a list, not an object", "data check pairs.jsonl",
         lambda env: check(make.jsonl_set(env.p("data"), ['{"image": "img/a0.png", "caption": "x"}', "[1, 2]"])), 1,
         "pairs.jsonl line 2: expected a JSON object"),
    Case("data-jsonl-empty", "data sets", "empty JSONL file", "data check pairs.jsonl",
         lambda env: check(make.write(env.p("pairs.jsonl"), "")), 1, "pairs.jsonl: empty file"),
    Case("data-missing-split", "data sets", "--split that the data set does not have", "evaluate --split nope",
         lambda env: evaluate(env, "--split", "nope"), 1, "has no split 'nope'"),
    Case("data-empty-split", "data sets", "a MedPix split file with no records", "data check DIR",
         lambda env: check(make.medpix_set(env.p("data"), raw_lines=[])), 1, "split 'test' is empty"),
    Case("data-openi-malformed-xml", "data sets", "OpenI report that is malformed XML (skipped, listed)",
         "data check DIR", lambda env: check(_openi_with_report(env, "12.xml", "<eCitation><uId id=")), 1,
         "ecgen-radiology/12.xml: malformed XML", report=True),
    Case("data-openi-entity-bomb", "data sets", "OpenI report with an XML entity bomb (billion laughs)",
         "data check DIR", lambda env: check(_openi_with_report(env, "12.xml", make.XML_ENTITY_BOMB)), 1,
         "ecgen-radiology/12.xml: XML with an entity declaration ('lol'), refused", report=True),
    Case("data-openi-missing-image", "data sets", "OpenI report naming an image that is not there",
         "data check DIR", lambda env: check(_openi_without_image(env, "CXR12_IM-0144-1001")), 1,
         "names image CXR12_IM-0144-1001, but NLMCXR_png/CXR12_IM-0144-1001.png does not exist", report=True),
    Case("data-csv-missing-column", "data sets", "CSV without an image column", "data check pairs.csv",
         lambda env: check(make.csv_set(env.p("data"), ["x,y"], header="caption,modality")), 1, "pairs.csv"),
    Case("data-csv-unknown-column-option", "data sets", "--caption-column naming a column the CSV lacks",
         "data check pairs.csv --caption-column report",
         lambda env: check(make.csv_set(env.p("data")), "--caption-column", "report"), 1, "'report'"),
    Case("data-csv-bom", "data sets", "CSV saved with a UTF-8 byte-order mark", "data check pairs.csv --json",
         lambda env: check(make.csv_set(env.p("data"), prefix="\ufeff".encode()), "--json"), 0, '"samples": 4'),
    Case("data-csv-quoted-commas", "data sets", "captions with quoted commas", "data check pairs.csv --json",
         lambda env: check(make.csv_set(env.p("data"), [f'img/a{i}.png,"axial CT, with contrast",CT,train' for i in range(4)]),
                           "--json"), 0, '"samples": 4'),
    Case("data-csv-semicolon", "data sets", "CSV with ; as the delimiter", "data check pairs.csv --json",
         lambda env: check(make.csv_set(env.p("data"), [f"img/a{i}.png;scan {i};CT;train" for i in range(4)],
                                        header="image;caption;modality;split"), "--json"), 0, '"samples": 4'),
    Case("data-csv-ragged-row", "data sets", "CSV row with an unquoted extra comma", "data check pairs.csv",
         lambda env: check(make.csv_set(env.p("data"), ["img/a0.png,a,CT,train", "img/a1.png,b, c,CT,train"])), 1,
         "pairs.csv line 3"),
    Case("data-csv-duplicate-header", "data sets", "CSV header naming a column twice", "data check pairs.csv",
         lambda env: check(make.csv_set(env.p("data"), ["img/a0.png,a,b"], header="image,caption,caption")), 1,
         "pairs.csv line 1: column 'caption' appears twice"),
    Case("data-csv-empty", "data sets", "empty CSV file", "data check pairs.csv",
         lambda env: check(make.write(env.p("pairs.csv"), "")), 1, "pairs.csv: empty file"),
    Case("data-csv-non-utf8", "data sets", "Latin-1 caption in a UTF-8 CSV", "data check pairs.csv",
         lambda env: check(make.csv_set(env.p("data"), ["img/a0.png,caf\udce9,CT,train"])), 1, "pairs.csv"),
    Case("data-empty-captions", "data sets", "empty captions (reported)", "data check pairs.csv --json",
         lambda env: check(make.csv_set(env.p("data"), [f"img/a{i}.png,,CT,train" for i in range(4)]), "--json"), 0,
         '"empty_captions": 4'),
    Case("data-long-caption", "data sets", "10,000-character caption (reported as truncated)", "data check pairs.csv --json",
         lambda env: check(make.csv_set(env.p("data"), ["img/a0.png," + "x " * 5000 + ",CT,train"]), "--json"), 0,
         '"truncated_captions": 1'),
    Case("data-long-caption-train", "data sets", "10,000-character caption in a training set (truncated to the context)",
         "finetune --data pairs.csv ...",
         lambda env: finetune(env, data=make.csv_set(env.p("data"), [f"img/a{i}.png,{'lesion ' * 1500},CT,train" for i in range(4)])),
         0, "last:"),
    Case("data-no-captions-train", "data sets", "training set whose captions are all empty", "finetune --data pairs.csv ...",
         lambda env: finetune(env, data=make.csv_set(env.p("data"), [f"img/a{i}.png,,CT,train" for i in range(4)])), 1,
         "the 'train' split has no readable image with a caption", report=True),
    Case("data-label-not-in-class-list", "data sets", "label value absent from the --labels-file class list",
         "data check pairs.csv --labels-file labels.toml --json",
         lambda env: check(make.csv_set(env.p("data")), "--labels-file",
                           str(make.write(env.p("labels.toml"), '[modality.classes]\nCT = "computed tomography"\n')), "--json"),
         0, '"unlabelled"'),
    Case("data-labels-file-bad-toml", "data sets", "--labels-file that is not TOML", "data check pairs.csv --labels-file bad.toml",
         lambda env: check(make.csv_set(env.p("data")), "--labels-file", str(make.write(env.p("bad.toml"), "[modality\n"))),
         1, "bad.toml: not valid TOML"),
    Case("data-duplicate-image-ids", "data sets", "the same image listed twice", "data check pairs.csv",
         lambda env: check(make.csv_set(env.p("data"), ["img/a0.png,one,CT,train", "img/a0.png,two,MR,train"])),
         1, "pairs.csv line 3: duplicate image 'img/a0.png'; skipped", report=True),
    Case("data-path-escapes-folder", "data sets", "image path ../../etc/passwd in a CSV", "data check pairs.csv",
         lambda env: check(make.csv_set(env.p("data"), ["../../etc/passwd,x,CT,train", "img/a0.png,y,CT,train"])), 1,
         "pairs.csv line 2: image path '../../etc/passwd' points outside", report=True),
    Case("data-absolute-path", "data sets", "absolute image path /etc/hostname in a JSONL", "data check pairs.jsonl",
         lambda env: check(make.jsonl_set(env.p("data"), ['{"image": "/etc/hostname", "caption": "x"}',
                                                          '{"image": "img/a0.png", "caption": "y"}'])), 1,
         "pairs.jsonl line 1: image path '/etc/hostname' points outside", report=True),
    Case("data-no-such-path", "data sets", "--data that does not exist", "evaluate --data nowhere",
         lambda env: evaluate(env, data=env.p("nowhere")), 1, "nowhere: no such file or folder"),
    Case("data-unknown-format", "data sets", "--dataset naming no format", "data check DIR --dataset parquet",
         lambda env: check(make.csv_set(env.p("data")), "--dataset", "parquet"), 2, "--dataset 'parquet'"),
    Case("data-unrecognised-folder", "data sets", "a folder that is no known data-set layout", "data check empty/",
         lambda env: check((env.p("empty").mkdir(), env.p("empty"))[1]), 1, "empty"),
    # -- options --------------------------------------------------------------------------------
    Case("option-lambda-above-1", "options", "--loss-weight 1.5", "finetune --loss-weight 1.5",
         lambda env: finetune(env, "--loss-weight", "1.5"), 2, "--loss-weight must be between 0 and 1", output="run"),
    Case("option-lambda-negative", "options", "--loss-weight -0.1", "finetune --loss-weight -0.1",
         lambda env: finetune(env, "--loss-weight", "-0.1"), 2, "--loss-weight must be between 0 and 1", output="run"),
    Case("option-lambda-nan", "options", "--loss-weight nan", "finetune --loss-weight nan",
         lambda env: finetune(env, "--loss-weight", "nan"), 2, "--loss-weight must be between 0 and 1", output="run"),
    Case("option-batch-size-0", "options", "--batch-size 0 (finetune)", "finetune --batch-size 0",
         lambda env: finetune(env, "--batch-size", "0"), 2, "--batch-size must be a positive whole number", output="run"),
    Case("option-batch-size-negative", "options", "--batch-size -4 (finetune)", "finetune --batch-size -4",
         lambda env: finetune(env, "--batch-size", "-4"), 2, "--batch-size must be a positive whole number", output="run"),
    Case("option-eval-batch-size-0", "options", "--batch-size 0 (evaluate)", "evaluate --batch-size 0",
         lambda env: evaluate(env, "--batch-size", "0"), 2, "--batch-size"),
    Case("option-bootstrap-negative", "options", "--bootstrap -1 (evaluate)", "evaluate --bootstrap -1",
         lambda env: evaluate(env, "--bootstrap", "-1"), 2, "--bootstrap"),
    Case("option-calibrate-on-evaluated-split", "options", "--calibrate-on the evaluated split", "evaluate --split test --calibrate-on test",
         lambda env: evaluate(env, "--calibrate-on", "test"), 2, "--calibrate-on test: the evaluated split itself"),
    Case("data-missing-calibration-split", "data sets", "--calibrate-on a split the data set does not have", "evaluate --calibrate-on nope",
         lambda env: evaluate(env, "--calibrate-on", "nope"), 1, "has no split 'nope'"),
    Case("option-image-size-0", "options", "--image-size 0", "finetune --image-size 0",
         lambda env: finetune(env, "--image-size", "0"), 2, "--image-size", output="run"),
    Case("option-epochs-0", "options", "--epochs 0", "finetune --epochs 0",
         lambda env: finetune(env, "--epochs", "0"), 2, "--epochs must be a positive whole number", output="run"),
    Case("option-lr-negative", "options", "--lr -1", "finetune --lr -1",
         lambda env: finetune(env, "--lr", "-1"), 2, "--lr must be a positive number", output="run"),
    Case("option-grad-clip-negative", "options", "--grad-clip -1 (would flip every gradient)", "finetune --grad-clip -1",
         lambda env: finetune(env, "--grad-clip", "-1"), 2, "--grad-clip must be zero (off) or positive", output="run"),
    Case("option-download-to-a-file", "options", "data download --to naming a file", "data download medpix2 --to taken",
         lambda env: ["data", "download", "medpix2", "--to", str(_not_a_folder(env))], 1, "taken: exists and is not a folder"),
    Case("option-precision-unknown", "options", "--precision fp8", "finetune --precision fp8",
         lambda env: finetune(env, "--precision", "fp8"), 2, "--precision must be one of", output="run"),
    Case("option-unknown-encoder", "options", "--encoder that no plugin registered", "classify scan.png --encoder test-vitt",
         lambda env: ["classify", str(make.png(env.p("scan.png"))), "--labels", "a,b", "--encoder", "test-vitt"], 2,
         "test-vitt"),
    Case("option-unknown-task", "options", "--task that is no label field", "evaluate --task organ",
         lambda env: evaluate(env, "--task", "organ"), 2, "--task 'organ' is not a task of this data set"),
    Case("option-seeds-repeated", "options", "--seeds with a repeated seed", "reproduce --seeds 1,1",
         lambda env: ["reproduce", "--experiment", "offline", "--seeds", "1,1", "--output", str(env.p("out"))], 2, "--seeds '1,1'"),
    Case("option-unknown-experiment", "options", "--experiment that does not exist", "reproduce --experiment nope",
         lambda env: ["reproduce", "--experiment", "nope", "--output", str(env.p("out"))], 2, "nope"),
    Case("option-reproduce-no-data", "options", "reproduce --data that does not exist", "reproduce --experiment zeroshot-vit-b-32 --data nowhere",
         lambda env: ["reproduce", "--experiment", "zeroshot-vit-b-32", "--data", str(env.p("nowhere")), "--output",
                      str(env.p("out")), "--device", "cpu"], 1, "nowhere: no such file or folder", output="out"),
    Case("option-unknown-device", "options", "--device tpu", "classify scan.png --device tpu",
         lambda env: classify(make.png(env.p("scan.png"))) + ["--device", "tpu"], 2, "--device"),
    Case("option-resume-nothing", "options", "--resume with nothing to resume", "finetune --resume --output new/",
         lambda env: finetune(env, "--resume"), 1, "nothing to resume"),
    Case("option-resume-config-not-utf8", "options", "--resume of a run whose config.json is not UTF-8",
         "finetune --output run/ --resume",
         lambda env: (make.write(env.p("run") / "config.json", b"\xff\xfe{"), ["finetune", "--output", str(env.p("run")), "--resume"])[1],
         2, "config.json: cannot read the run's settings"),
    Case("option-resume-config-a-list", "options", "--resume of a run whose config.json is a list",
         "finetune --output run/ --resume",
         lambda env: (make.write(env.p("run") / "config.json", "[1, 2]"), ["finetune", "--output", str(env.p("run")), "--resume"])[1],
         2, "config.json: cannot read the run's settings"),
    Case("option-model-config-too-deep", "options", "--model bundle whose open_clip_config.json nests 100,000 lists",
         "classify scan.png --model bundle/",
         lambda env: ["classify", str(make.png(env.p("scan.png"))), "--labels", "a,b", "--model",
                      str(make.write(env.bundle("vit-bundle") / "open_clip_config.json", "[" * 100_000).parent)], 1,
         "open_clip_config.json: not valid JSON"),
    Case("option-model-no-manifest", "options", "--model folder without a manifest", "classify scan.png --model empty/",
         lambda env: ["classify", str(make.png(env.p("scan.png"))), "--labels", "a,b", "--model",
                      str((env.p("empty").mkdir(), env.p("empty"))[1])], 1, "empty"),
    Case("option-model-other-architecture", "options", "--model bundle holding weights of another architecture",
         "classify scan.png --model vit-bundle/",
         lambda env: ["classify", str(make.png(env.p("scan.png"))), "--labels", "a,b", "--model",
                      str(_model_of_another_architecture(env))], 1, "do not match this architecture"),
    Case("option-model-and-encoder", "options", "--model and --encoder together", "classify scan.png --model M --encoder E",
         lambda env: classify(make.png(env.p("scan.png")), "--model", str(env.bundle("vit-bundle"))), 2,
         "either --model DIR or --encoder NAME"),
    Case("option-output-is-a-file", "options", "finetune --output naming a file", "finetune --output taken",
         lambda env: [*finetune(env), "--output", str(_not_a_folder(env))], 1, "taken"),
    Case("option-output-not-writable", "options", "evaluate --output below a file (cannot be created)",
         "evaluate --output taken/eval",
         lambda env: evaluate(env, "--output", str(_not_a_folder(env) / "eval")), 1, "taken/eval"),
    Case("option-eval-output-is-a-file", "options", "evaluate --output naming a file (refused before any work)",
         "evaluate --output taken", lambda env: evaluate(env, "--output", str(_not_a_folder(env))), 1,
         "taken: exists and is not a folder"),
    Case("option-output-exists", "options", "finetune --output of an earlier run (left untouched)",
         "finetune --output run/ (again)", lambda env: _earlier_run_then(env), 1, "already exists"),
    Case("option-top-k-0", "options", "--top-k 0", "classify scan.png --top-k 0",
         lambda env: classify(make.png(env.p("scan.png")), "--top-k", "0"), 2, "--top-k"),
    Case("option-window-bad", "options", "--window 40", "classify scan.png --window 40",
         lambda env: classify(make.png(env.p("scan.png")), "--window", "40"), 2, "--window '40'"),
    Case("option-no-labels", "options", "classify without labels", "classify scan.png",
         lambda env: ["classify", str(make.png(env.p("scan.png"))), "--encoder", "test-vit"], 2, "no labels given"),
    Case("option-label-twice", "options", "the same label twice", "classify scan.png --labels a,a",
         lambda env: ["classify", str(make.png(env.p("scan.png"))), "--labels", "a,a", "--encoder", "test-vit"], 2,
         "label given twice: a"),
    Case("option-unknown-download", "options", "data download of an unknown data set", "data download mimic",
         lambda env: ["data", "download", "mimic", "--to", str(env.p("mimic"))], 2, "unknown data set 'mimic'"),
    # -- embed, probe and search ----------------------------------------------------------------
    Case("embed-empty-folder", "data sets", "embed a folder without images", "embed --data empty/ -o emb.parquet",
         lambda env: embed(env, env.p("empty").mkdir() or env.p("empty")), 1, "no images in this folder"),
    Case("embed-into-another-models-file", "data sets", "embed into a file written by another model (left untouched)",
         "embed --encoder test-resnet -o emb.parquet (of test-vit)", _embed_then_other_model, 1,
         "cannot mix embeddings of different models"),
    Case("embed-file-corrupt", "data sets", "search an embedding file that is not Parquet", 'search emb.parquet "CT"',
         lambda env: ["search", str(make.write(env.p("emb.parquet"), b"PAR1 but cut short")), "CT"], 1,
         "not a readable medclip embedding file"),
    Case("probe-task-one-class", "data sets", "probe a task whose training split has one class",
         "probe --task modality (train: all CT)", lambda env: probe(env, _two_splits(env, train_kinds=["CT"] * 4)), 1,
         "needs at least 2 classes"),
    Case("probe-k-above-class", "options", "--shots larger than a class", "probe --shots 8 (2 per class)",
         lambda env: probe(env, _two_splits(env), "--shots", "8"), 2, "--shots 8: class"),
    Case("probe-shots-bad", "options", "--shots with a word", "probe --shots 1,few",
         lambda env: probe(env, _two_splits(env), "--shots", "1,few"), 2, "'few' is neither a number nor 'all'"),
    Case("search-no-query", "options", "search without a text or --image", "search emb.parquet",
         lambda env: ["search", str(env.p("emb.parquet"))], 2, "give a query text or --image FILE"),
    # -- prompt templates -----------------------------------------------------------------------
    Case("template-no-placeholder", "prompt templates", "template without {}", 'classify scan.png -t "a photo"',
         lambda env: classify(make.png(env.p("scan.png")), "-t", "a photo"), 2, "has no {} placeholder"),
    Case("template-positional", "prompt templates", "template {0}", 'classify scan.png -t "{0} scan"',
         lambda env: classify(make.png(env.p("scan.png")), "-t", "{0} scan"), 2, "'{0} scan' has no {} placeholder"),
    Case("template-named", "prompt templates", "template {label}", 'classify scan.png -t "{label} scan"',
         lambda env: classify(make.png(env.p("scan.png")), "-t", "{label} scan"), 2, "has no {} placeholder"),
    Case("template-attribute-access", "prompt templates", "template {0.__class__} (never evaluated)",
         'classify scan.png -t "{0.__class__}"',
         lambda env: classify(make.png(env.p("scan.png")), "-t", "{0.__class__}"), 2, "has no {} placeholder"),
    Case("template-attribute-with-placeholder", "prompt templates", "template {} {0.__class__.__mro__} (kept as text)",
         'classify scan.png -t "{} {0.__class__.__mro__}"',
         lambda env: classify(make.png(env.p("scan.png")), "-t", "{} {0.__class__.__mro__}", "--json"), 0, "probability"),
    Case("template-escaped-braces", "prompt templates", "template {{}} (plain substitution, braces kept)",
         'classify scan.png -t "{{}}"', lambda env: classify(make.png(env.p("scan.png")), "-t", "{{}}", "--json"), 0,
         "probability"),
    Case("template-file-bad", "prompt templates", "prompt file whose template lacks {}", "evaluate --prompts bad.toml",
         lambda env: evaluate(env, "--prompts", str(make.write(env.p("bad.toml"), 'templates = ["{label} image"]\n'))),
         2, "bad.toml"),
    Case("template-file-not-toml", "prompt templates", "prompt file that is not valid TOML", "evaluate --prompts bad.toml",
         lambda env: evaluate(env, "--prompts", str(make.write(env.p("bad.toml"), "templates = [\n"))), 2,
         "bad.toml: not valid TOML"),
    Case("template-set-unknown", "prompt templates", "--prompts naming no set", "evaluate --prompts nope",
         lambda env: evaluate(env, "--prompts", "nope"), 2, "--prompts 'nope': no such prompt set"),
    # -- downloads and archives -----------------------------------------------------------------
    Case("download-truncated", "downloads and archives", "download cut off half-way", "data download medpix2 --to mp",
         lambda env: (env.serve(make.zip_with(_MEDPIX_ZIP_OK), cut_after=40),
                      ["data", "download", "medpix2", "--to", str(env.p("mp"))])[1], 1, "is truncated", output="mp"),
    Case("download-checksum-mismatch", "downloads and archives", "--sha256 that the archive does not have",
         "data download medpix2 --sha256 00…",
         lambda env: (env.serve(make.zip_with(_MEDPIX_ZIP_OK)),
                      ["data", "download", "medpix2", "--to", str(env.p("mp")), "--sha256", "0" * 64])[1], 1, "sha256",
         output="mp"),
    Case("download-dotdot-entry", "downloads and archives", "zip entry ../evil.txt", "data download medpix2 --to mp",
         lambda env: (env.serve(make.zip_with({**_MEDPIX_ZIP_OK, "MedPix-2.0-main/../../evil.txt": b"x"})),
                      ["data", "download", "medpix2", "--to", str(env.p("mp"))])[1], 1, "evil.txt", output="mp"),
    Case("download-absolute-entry", "downloads and archives", "zip entry /tmp/evil.txt", "data download medpix2 --to mp",
         lambda env: (env.serve(make.zip_with({**_MEDPIX_ZIP_OK, "/tmp/medclip-evil.txt": b"x"})),
                      ["data", "download", "medpix2", "--to", str(env.p("mp"))])[1], 1, "medclip-evil.txt", output="mp"),
    Case("download-symlink-entry", "downloads and archives", "tar entry that is a symlink to /etc/passwd",
         "data download medpix2 --to mp",
         lambda env: (env.serve(make.tar_with_symlink("MedPix-2.0-main/passwd", "/etc/passwd")),
                      ["data", "download", "medpix2", "--to", str(env.p("mp"))])[1], 1, "passwd", output="mp"),
    Case("download-not-an-archive", "downloads and archives", "download that is not an archive", "data download medpix2 --to mp",
         lambda env: (env.serve(b"<html>rate limited</html>"), ["data", "download", "medpix2", "--to", str(env.p("mp"))])[1],
         1, "mp", output="mp"),
    Case("download-http-404", "downloads and archives", "download URL answering 404", "data download medpix2",
         lambda env: (env.serve(b""), env.monkeypatch.setenv("MEDCLIP_MEDPIX_URL", env._server.url + ".missing"),
                      ["data", "download", "medpix2", "--to", str(env.p("mp"))])[2], 1, "HTTP 404", output="mp"),
    # -- checkpoints and plugins ----------------------------------------------------------------
    Case("weights-pickle-runs-code", "checkpoints and plugins", ".pt weights whose pickle runs code (not run)",
         "classify scan.png --encoder test-vit --pretrained evil.pt",
         lambda env: classify(make.png(env.p("scan.png")), "--pretrained",
                              str(make.pickle_that_runs_code(env.p("evil.pt"), env.p("pwned")))), 1,
         "evil.pt: refused to load"),
    Case("weights-not-a-weights-file", "checkpoints and plugins", "--pretrained naming a PNG, not weights",
         "classify scan.png --encoder test-vit --pretrained other.png",
         lambda env: classify(make.png(env.p("scan.png")), "--pretrained", str(make.png(env.p("other.png")))), 1,
         "other.png: not a weights file"),
    Case("checkpoint-pickle-runs-code", "checkpoints and plugins", "training_state.pt whose pickle runs code (not run)",
         "finetune --output run/ --resume", _evil_checkpoint, 1, "training_state.pt: cannot read the checkpoint"),
    Case("weights-corrupt-safetensors", "checkpoints and plugins", "safetensors file with a corrupt header",
         "classify scan.png --encoder test-vit --pretrained bad.safetensors",
         lambda env: classify(make.png(env.p("scan.png")), "--pretrained",
                              str(make.corrupt_safetensors(env.p("bad.safetensors")))), 1,
         "bad.safetensors: corrupt or unreadable weights file"),
    Case("bundle-corrupt-safetensors", "checkpoints and plugins", "model bundle whose model.safetensors is corrupt",
         "classify scan.png --model bundle/",
         lambda env: ["classify", str(make.png(env.p("scan.png"))), "--labels", "a,b", "--model",
                      str(make.corrupt_safetensors(env.bundle("vit-bundle") / "model.safetensors").parent)], 1,
         "model.safetensors"),
    Case("plugin-raises-on-import", "checkpoints and plugins", "plugin that raises on import (one warning, command runs)",
         "encoders 'test-*'", lambda env: (env.plugin("boom_plugin", "raise RuntimeError('boom')\n"), ["encoders", "test-*"])[1],
         0, "plugin 'boom_plugin' from boom_plugin failed to load"),
    Case("plugin-duplicate-name", "checkpoints and plugins", "plugin registering an encoder name that exists",
         "encoders", lambda env: (env.plugin("dup_plugin", _DUP_PLUGIN), ["encoders"])[1], 1, "test-vit"),
    Case("plugin-wrong-hook-signature", "checkpoints and plugins", "plugin whose hook takes an unknown argument",
         "encoders 'test-*'", lambda env: (env.plugin("wrong_hook", _WRONG_HOOK), ["encoders", "test-*"])[1], 0,
         "wrong_hook"),
]

from tests.reliability.cases_hostile import HOSTILE_CASES  # noqa: E402  (issue 17; they use the helpers above)

CASES += HOSTILE_CASES

from tests.reliability.cases_session5 import SESSION5_CASES  # noqa: E402  (session 5's features; helpers above)

CASES += SESSION5_CASES

from tests.reliability.cases_shards import SHARD_CASES  # noqa: E402  (hostile WebDataset shards; helpers above)

CASES += SHARD_CASES
