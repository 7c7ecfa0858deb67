"""Command line: ``ssl-bench run | report | list | detect-eval | check | export``."""

from __future__ import annotations

import argparse
import errno
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

EPILOG = """examples:
  ssl-bench run                                   the default preset on the built-in synthetic dataset
  ssl-bench run --preset ci --methods random,supervised --out /tmp/ci
  ssl-bench run --backbone resnet18,resnet34,resnet18-w0.5 --seeds 0,1,2
  ssl-bench run --set train.epochs=30 --set autoencoder.noise_std=0.2
  ssl-bench report --out results
  ssl-bench list
  ssl-bench detect-eval --gt VOCdevkit/VOC2007 --split test --dets dets.json --protocol voc07
  ssl-bench detect-eval --gt instances_val2017.json --dets dets.json --protocol coco --json
  ssl-bench check --baseline results/baselines/ci.csv --results /tmp/ci/results.csv   (both layers)
  ssl-bench check --fingerprints --select methods.pirl                            (one method, seconds)
  ssl-bench export --out results --method pirl --to exported          (timm weights + model card per run)
"""


FINGERPRINTS = "results/baselines/fingerprints.json"  # the committed fingerprints (run from the checkout)

# What `main` returns for `run` (and `report`): ConfigError -> 2, KeyboardInterrupt (SIGTERM raises it) -> 130,
# FileNotFoundError / ValueError / RuntimeError / OSError -> 1; any other exception is Python's traceback, status 1.
RUN_EXIT_CODES = """exit status:
  0    done: every unit cached or computed, the report written (unless --no-report)
  1    an error stopped it, named on stderr (a missing file, a non-finite loss, a corrupt checkpoint, a full
       disk, ...; --debug shows the traceback); an unexpected exception prints its traceback, also 1
  2    invalid command line or configuration (an unknown preset, method or key, a bad value, a missing
       dataset root), said on stderr; usually before anything ran
  130  interrupted (Ctrl-C, or SIGTERM such as a cluster's pre-emption; a training loop saves a checkpoint
       first): finished work is kept, and the same command resumes
finished work is always kept in --out: re-running after any exit status skips it.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssl-bench",
        description="Pretrain self-supervised methods on one shared backbone and measure them with one evaluation harness.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="{run,report,list,detect-eval,check,export}")

    run = sub.add_parser(
        "run",
        help="pretrain and evaluate (skips everything already in <out>/results.csv)",
        description="Resolve a preset plus overrides, then pretrain every method x backbone x seed and run\n"
        "every evaluation that has no result yet. Finished work is cached under --out.",
        epilog=RUN_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--preset", default="default", help="named preset (see `ssl-bench list`); default: default")
    run.add_argument("--methods", help="comma-separated methods, e.g. random,supervised,autoencoder")
    run.add_argument("--evals", help="comma-separated evaluations, e.g. linear,knn")
    run.add_argument("--dataset", help="dataset name (see `ssl-bench list`)")
    run.add_argument("--data-root", help="where the dataset's files are (the built-in dataset is generated there)")
    run.add_argument(
        "--download",
        action="store_true",
        help="download a missing cifar10, cifar100 or stl10 into --data-root (default <out>/data)",
    )
    run.add_argument(
        "--backbone",
        help="comma-separated backbone specs (a sweep), e.g. resnet18,resnet34,resnet18-w0.5; every evaluation runs "
        "on each, and the preset's extra sizes (sizes.backbones, linear probe only) are left out unless --set names them",
    )
    run.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,2")
    run.add_argument(
        "--epochs",
        type=int,
        help="pretraining epochs (overrides the preset's train.epochs; a method with its "
        "own, e.g. --set jigsaw.epochs=50, keeps them)",
    )
    run.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    run.add_argument("--threads", type=int, help="CPU threads for torch (default: one per core; the ci preset pins 2)")
    run.add_argument(
        "--out", default="results", help="output directory (results.csv, runs/, report/); default: results"
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any config key, e.g. train.batch_size=64, linear.epochs=10, autoencoder.noise_std=0.1",
    )
    run.add_argument(
        "--log",
        metavar="TARGETS",
        help="also send the per-epoch training metrics to tensorboard and/or wandb, e.g. --log tensorboard,wandb "
        '(sets log.tensorboard / log.wandb; optional extras: pip install -e ".[tensorboard]" or ".[wandb]")',
    )
    run.add_argument("--no-report", action="store_true", help="do not write the report after the run")
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    report = sub.add_parser("report", help="write tables and figures from <out>/results.csv (never retrains)")
    report.add_argument(
        "--out", default="results", help="directory holding results.csv; the report goes to <out>/report"
    )
    report.add_argument(
        "--published",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the PIRL paper's numbers beside ours (hollow markers, marked 'published'); "
        "default: on when a pretraining dataset is ImageNet, else off",
    )
    report.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    lst = sub.add_parser("list", help="list methods, evaluations, datasets and presets")
    lst.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead: {section: {name: description}}, sections methods, evaluations, "
        "datasets, detection_datasets, svm_datasets, evaluation_options, presets, backbones",
    )
    lst.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    det = sub.add_parser(
        "detect-eval",
        help="score detections made elsewhere (COCO results json) with our evaluators",
        description="Score a COCO results json (a list of {image_id, category_id or category, bbox [x, y, w, "
        "h], score}) against ground truth: a COCO instances json, a directory of VOC XML files "
        "(image ids = file stems) or a VOC-layout root with --split. Prints AP, AP50 and AP75 (coco: also APs, "
        "APm, APl, COCO's small / medium / large objects), as a table or, with --json, as one JSON object.",
    )
    det.add_argument(
        "--gt", required=True, help="COCO instances .json, a directory of VOC .xml files, or a VOC-layout root"
    )
    det.add_argument("--dets", required=True, help="detections as a COCO results .json")
    det.add_argument(
        "--protocol",
        required=True,
        help="voc07 (VOC2007 11-point AP, difficult ignored) or coco (pycocotools COCOeval; on a COCO json "
        "ground truth it scores the two files as they are, equal to COCOeval run on them)",
    )
    det.add_argument("--split", help="image set of a VOC-layout root (ImageSets/Main/<split>.txt), e.g. test")
    det.add_argument(
        "--coco-backend",
        default="pycocotools",
        help="who computes the coco protocol: pycocotools (default, the reference) or faster-coco-eval (the same "
        'numbers, faster; pip install -e ".[faster-coco-eval]")',
    )
    det.add_argument(
        "--clip-boxes", action="store_true", help="clip VOC boxes that leave the image (warns; drops empty ones)"
    )
    det.add_argument("--per-class", action="store_true", help="also print per-class AP (voc07: AP50, coco: AP)")
    det.add_argument(
        "--json",
        action="store_true",
        help="print every metric, per-class included, as one JSON object at full float precision (no table)",
    )
    det.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    chk = sub.add_parser(
        "check",
        help="CI regression gate: fingerprints (portable, tight) and the ci preset's accuracy (banded); "
        "exit 1 on a regression, 2 when it cannot compare",
        description="Two layers. Fingerprints: a few float64 training steps of every method and every evaluation "
        "on fixed inputs, computed here (about half a minute on 2 cores, no data) and compared at 1e-4 relative with "
        "the committed fingerprints.json; they hold on any machine and catch any change to a loss, "
        "a head, an augmentation, a default, a schedule or an evaluator. Accuracy: every number of "
        "the --baseline must be in the --results (mean over seeds, latest run per seed) and within "
        "its band, measured from its spread over seeds and machines; it catches a method that "
        "stopped learning. With --baseline both layers run; --fingerprints runs only the first, "
        "--no-fingerprints only the second. Exit 0 pass, 1 regression, 2 cannot compare.",
    )
    chk.add_argument("--baseline", help="the committed accuracy baseline CSV, e.g. results/baselines/ci.csv")
    chk.add_argument(
        "--results",
        nargs="+",
        type=Path,
        default=[Path("results/results.csv")],
        metavar="CSV",
        help="results table(s) to check; with --update several (e.g. other machines') pool into the bands; "
        "default: results/results.csv",
    )
    chk.add_argument("--fingerprints", action="store_true", help="only the fingerprint layer (no --baseline needed)")
    chk.add_argument("--no-fingerprints", action="store_true", help="only the accuracy layer")
    chk.add_argument(
        "--fingerprints-file",
        type=Path,
        metavar="JSON",
        help=f"committed fingerprints; default: fingerprints.json beside --baseline, else {FINGERPRINTS}",
    )
    chk.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="PREFIX",
        help="only the fingerprints under this prefix, e.g. methods.pirl or evaluations.linear (repeatable)",
    )
    chk.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="replace the baseline's bands of a metric by this absolute difference, e.g. top1=2,AP=0.5 "
        "(repeatable); a bare number sets every metric",
    )
    chk.add_argument("--all", action="store_true", help="show every compared number, not only failures")
    chk.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object on stdout (the text goes to stderr): passed, exit_code, error, and per layer "
        "what was checked and every number out of its band at full precision; exit codes as without it",
    )
    chk.add_argument(
        "--update",
        action="store_true",
        help="rewrite the checked layers' baselines on purpose (exit 0): the fingerprints from this machine, "
        "the accuracy baseline and its bands from --results (give several seeds)",
    )
    chk.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    exp = sub.add_parser(
        "export",
        help="write pretrained backbones as files other code loads (timm safetensors, config.json, model card)",
        description="Per pretrained backbone, write <to>/<run_id>/ with model.safetensors (the timm model's own "
        "state dict), config.json (timm's config plus the spec, method, data, epochs, preset, seed, hash and "
        "versions) and README.md (a model card with the run's numbers from results.csv), the layout "
        "`hf upload <user>/<repo> <dir>` pushes as is. Plain timm backbones load with timm.create_model; "
        "every one with ssl_bench.load_backbone(<dir>). An existing different export is never replaced.",
    )
    exp.add_argument("--out", default="results", help="directory of the runs (results.csv, runs/); default: results")
    who = exp.add_mutually_exclusive_group()
    who.add_argument(
        "--unit",
        action="append",
        type=Path,
        metavar="RUN_DIR",
        help="a run directory <out>/runs/<run_id> to export (repeatable); default: every finished run",
    )
    who.add_argument("--method", help="comma-separated methods: every finished run of each, e.g. pirl,npidpp")
    exp.add_argument("--to", required=True, type=Path, help="where the exports go, one directory per run")
    exp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return parser


def run_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The run command's flags as ``ssl_bench.api.run``'s named arguments (None: not given)."""
    return dict(
        methods=args.methods,
        evals=args.evals,
        backbones=args.backbone,
        seeds=args.seeds,
        epochs=args.epochs,
        dataset=args.dataset,
        data_root=args.data_root,
        download=args.download or None,
        device=args.device,
        threads=args.threads,
    )


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The run command's flags as the overrides ``run_config.load`` takes: the mapping ``api.run`` applies."""
    from ssl_bench import api
    from ssl_bench.run_config import parse_set

    return api.config_overrides(run_arguments(args), getattr(args, "log", None), parse_set(args.set), {})


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from ssl_bench import api
    from ssl_bench.run_config import parse_set

    previous = signal.signal(signal.SIGTERM, _terminate)  # a cluster's pre-emption stops like Ctrl-C: checkpoint, exit
    try:
        api.run(
            args.preset,
            args.out,
            **run_arguments(args),
            log=args.log,
            report=not args.no_report,
            console=console,
            set=parse_set(args.set),
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_report(args: argparse.Namespace, console: Console) -> int:
    from ssl_bench import api

    api.report(args.out, published=args.published, console=console)
    return 0


EVAL_OPTIONS = {
    "linear.protocol": "cached (small presets: stored test-view features) | augmented (Goyal et al.: crop + flip "
    "through the frozen trunk every step; imagenet-paper); rows' protocol '' / 'augmented'",
    "linear.pool": "adaptive (any input size) | fixed (FSSB's AvgPool windows, ResNet at 224 px; imagenet-paper)",
    "linear.val_fraction": "training images held out to choose the best layer (default 0.1; 0 = choose on test)",
    "semisup.subset_files": "published 1%/10% lists (SimCLR's 1percent.txt,10percent.txt or VISSL .npy)",
    "semisup.nesterov": "Nesterov momentum in fine-tuning (default true, as VISSL)",
    "detection.multiscale / roi_aligned / box_loss / freeze_at / freeze_bn": "Detectron2's training choices "
    "(defaults) or torchvision's; README, Evaluations",
    "svm.costs / svm.layers": "the SVM cost sweep (FSSB's 26) and the stages to fit",
    "detection.coco_backend": "pycocotools (default) | faster-coco-eval (the coco protocol's same numbers, its "
    'evaluation about 4x faster; pip install -e ".[faster-coco-eval]")',
}


def cmd_list(args: argparse.Namespace, console: Console) -> int:
    from ssl_bench.data.registry import DATASET_HELP
    from ssl_bench.detection.evaluation import DETECTION_DATASET_HELP
    from ssl_bench.eval.harness import EVAL_HELP
    from ssl_bench.eval.svm import SVM_DATASET_HELP
    from ssl_bench.methods import available_methods
    from ssl_bench.run_config import available_presets

    sections = [  # (JSON key, title, {name: description})
        ("methods", "methods", {name: cls.paper for name, cls in available_methods().items()}),
        ("evaluations", "evaluations", EVAL_HELP),
        ("datasets", "datasets", DATASET_HELP),
        ("detection_datasets", "detection datasets (--set detection.dataset=NAME)", DETECTION_DATASET_HELP),
        ("svm_datasets", "svm datasets (--set svm.dataset=NAME)", SVM_DATASET_HELP),
        ("evaluation_options", "evaluation options (--set KEY=VALUE)", EVAL_OPTIONS),
        ("presets", "presets", available_presets()),
        (
            "backbones",
            "backbones",
            {
                "<timm name>": "any timm ResNet, e.g. resnet18, resnet34, resnet50, resnet10t",
                "<name>-smallstem": "3x3 stride-1 stem without max-pool, for 32 px inputs",
                "<name>-w<width>": "stage widths scaled, e.g. resnet18-w0.5 (for parameter sweeps)",
            },
        ),
    ]
    if getattr(args, "json", False):  # for scripts: the object alone on stdout
        write_json({key: {str(k): str(v) for k, v in items.items()} for key, _, items in sections})
        return 0
    for _, title, items in sections:
        table = Table(title=title, title_justify="left", show_header=False, box=None, padding=(0, 2))
        for name, text in items.items():
            table.add_row(f"[cyan]{name}", text)
        console.print(table)
    return 0


def cmd_detect_eval(args: argparse.Namespace, console: Console) -> int:
    from ssl_bench.detection.detect_eval import PROTOCOLS, detect_eval

    if args.protocol not in PROTOCOLS:
        from ssl_bench.config import unknown

        raise unknown("protocol", args.protocol, list(PROTOCOLS))
    scores = detect_eval(args.gt, args.dets, args.protocol, args.split, args.clip_boxes, args.coco_backend)
    if args.json:  # for scripts: every digit of every metric, nothing else on stdout
        write_json(scores)
        return 0
    table = Table(title=f"{args.protocol}: {args.dets} vs {args.gt}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in scores.items():
        if "/" not in key or args.per_class:
            table.add_row(key, f"{value:.2f}")
    console.print(table)
    return 0


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    from ssl_bench.config import ConfigError

    if args.fingerprints and args.no_fingerprints:
        raise ConfigError(
            "--fingerprints (only the fingerprint layer) and --no-fingerprints (only the accuracy layer) exclude "
            "each other; drop one"
        )
    accuracy = args.baseline is not None and not args.fingerprints
    fingerprint = not args.no_fingerprints
    if not accuracy and not fingerprint:
        raise ConfigError(
            "--no-fingerprints leaves the accuracy layer, which needs --baseline (e.g. --baseline "
            "results/baselines/ci.csv --results /tmp/ci/results.csv)"
        )
    if args.select and not fingerprint:
        raise ConfigError("--select chooses fingerprints; it does nothing with --no-fingerprints")
    if args.update and args.select:
        raise ConfigError("--update rewrites every fingerprint; drop --select")
    if args.baseline is not None and len(args.results) > 1 and not args.update:
        raise ConfigError(
            "several --results are pooled only by --update (into the bands); check one results table at a time"
        )
    as_json = getattr(args, "json", False)
    if as_json and args.update:
        raise ConfigError("--json reports a comparison and --update rewrites the baselines; drop one")
    if as_json:  # stdout holds the JSON object alone; progress and the text report go to stderr
        console = Console(stderr=True)
    path = args.fingerprints_file or (
        Path(args.baseline).parent / "fingerprints.json" if args.baseline else Path(FINGERPRINTS)
    )
    failed = []
    found: dict[str, dict[str, Any]] = {}  # for --json: what each layer checked and found
    try:
        tables = None
        if accuracy:  # read once, before the fingerprints: a missing or unreadable table fails at once
            from ssl_bench import check

            now = check.load_results(args.results)
            tables = (now, None if args.update else check.load_baseline(Path(args.baseline), args.results[0]))
        if fingerprint:
            found["fingerprints"] = check_fingerprints(args, path, console)
            if not found["fingerprints"]["passed"]:
                failed.append("fingerprints")
        if tables is not None:
            found["accuracy"] = check_accuracy(args, console, *tables)
            if not found["accuracy"]["passed"]:
                failed.append("accuracy")
    except (FileNotFoundError, ValueError) as e:
        if getattr(args, "debug", False):
            raise
        Console(stderr=True).print(f"[red]cannot compare:[/] {e}", highlight=False, soft_wrap=True)
        if as_json:
            write_json({"passed": False, "exit_code": 2, "error": str(e), "layers": found})
        return 2
    if not args.update:
        layers = [name for name, on in (("fingerprints", fingerprint), ("accuracy", accuracy)) if on]
        if failed:
            console.print(
                f"[red]check failed:[/] the {' and '.join(failed)} layer{'s' * (len(failed) > 1)} found a regression "
                f"(checked: {', '.join(layers)})",
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(f"[green]check passed:[/] {', '.join(layers)}", highlight=False)
    code = 1 if failed else 0
    if as_json:
        write_json({"passed": not failed, "exit_code": code, "error": None, "layers": found})
    return code


def write_json(data: object) -> None:
    """``data`` as one line of JSON on stdout, floats at full precision (repr: they read back bit for bit)."""
    import json

    sys.stdout.write(json.dumps(data) + "\n")


def check_fingerprints(args: argparse.Namespace, path: Path, console: Console) -> dict[str, Any]:
    """The fingerprint layer: compute, compare with ``path`` (or rewrite it with --update). Returns what ``--json``
    shows of it: passed, file, rtol, atol, checked (values compared) and moved (each differing value: key, baseline,
    now, relative difference of numbers, status changed | missing | new)."""
    import warnings

    from rich.markup import escape

    from ssl_bench import fingerprints

    if not args.update:
        expected = fingerprints.load(path)  # before the minute of computing: a missing file fails at once
    what = (
        f" under {', '.join(args.select)}: computing"
        if args.select
        else ": computing (about half a minute on 2 idle CPU cores)"
    )
    console.print(f"fingerprints{what} ...", highlight=False)
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", UserWarning
        )  # "32000 negatives requested but 16 slots": expected on fixed tiny data
        now = fingerprints.compute(args.select)
    if args.update:
        fingerprints.write(now, path)
        console.print(
            f"wrote the fingerprints to {escape(str(path))}; commit it, and say in the message why they moved",
            highlight=False,
            soft_wrap=True,
        )
        return {"passed": True}
    differences, total = fingerprints.compare(expected, now, args.select)
    had, has = fingerprints.flatten(expected), fingerprints.flatten(now)
    moved = [
        {
            "key": d.key,
            "baseline": had.get(d.key),
            "now": has.get(d.key),
            "relative": d.relative,
            "status": "missing" if d.key not in has else "new" if d.key not in had else "changed",
        }
        for d in differences
    ]
    layer = {
        "passed": not differences,
        "file": str(path),
        "rtol": expected.get("rtol"),
        "atol": expected.get("atol"),
        "checked": total,
        "moved": moved,
    }
    if not differences:
        console.print(
            f"[green]fingerprints hold:[/] {total} of {total} values match {escape(str(path))} "
            f"(rtol {expected.get('rtol')}, atol {expected.get('atol')})",
            highlight=False,
            soft_wrap=True,
        )
        return layer
    console.print(
        f"[red]fingerprints moved:[/] {len(differences)} of {total} values differ from {escape(str(path))} "
        f"(rtol {expected.get('rtol')}, atol {expected.get('atol')}):",
        highlight=False,
        soft_wrap=True,
    )
    shown = differences if args.all else differences[:30]
    for d in shown:
        console.print(f"  {escape(d.describe())}", highlight=False, soft_wrap=True)
    if len(shown) < len(differences):
        console.print(f"  ... and {len(differences) - len(shown)} more (--all lists them)", highlight=False)
    console.print(
        "A method, a default, an augmentation, a schedule or an evaluator changed. If that is intended, rewrite them "
        f"on purpose with `ssl-bench check --fingerprints --fingerprints-file {escape(str(path))} --update` and say in "
        "the commit message why they moved. (They do not depend on the machine: if the code did not change, report "
        "this machine's CPU and torch version.)",
        highlight=False,
        soft_wrap=True,
    )
    return layer


def check_accuracy(args: argparse.Namespace, console: Console, now, expected) -> dict[str, Any]:
    """The accuracy layer on the tables ``cmd_check`` read: compare ``now`` (--results) with ``expected`` (--baseline's
    bands), or rewrite the baseline from ``now`` with --update (``expected`` None). Returns what ``--json`` shows of
    it (``check.as_json`` with the files and, on a failure, the environment note); "passed" says whether it holds."""
    from rich.markup import escape

    from ssl_bench import check

    baseline, results = Path(args.baseline), args.results
    shown_results = " ".join(str(r) for r in results)
    if args.update:
        n = check.write_baseline(now, baseline)
        env = check.environment_path(baseline)
        single = int((now["seeds"] < 2).sum())
        console.print(
            f"wrote {n} numbers (mean over samples, bands) from {escape(shown_results)} to {escape(str(baseline))}, "
            f"and this environment to {escape(str(env))}; commit both",
            highlight=False,
            soft_wrap=True,
        )
        if single:
            console.print(
                f"warning: {single} of {n} numbers have one sample, so their band is the floor alone, not measured; "
                "run with several seeds (`--seeds 0,1,2`) for measured bands",
                style="yellow",
                highlight=False,
                soft_wrap=True,
            )
        return {"passed": True}
    overrides = check.parse_tolerances(args.tolerance, expected["metric"])
    rows = check.compare(expected, now, overrides)
    table = check.render(rows, show_all=args.all)
    if table is not None:
        check.print_table(console, table)
    failed = any(r.failed for r in rows)
    verdict = "[red]accuracy out of band:[/]" if failed else "[green]accuracy holds:[/]"
    console.print(f"{verdict} {check.summary(rows)}", highlight=False, soft_wrap=True)
    note = check.environment_note(baseline, results[0]) if failed else None
    layer = {**check.as_json(rows), "baseline_file": str(baseline), "results_file": str(results[0]), "note": note}
    if failed:
        console.print(
            f"If the change is intended, update the baseline on purpose from a run with several seeds: "
            f"{escape(check.update_command(baseline, results[0]))}",
            highlight=False,
            soft_wrap=True,
        )
        if note:
            console.print(escape(note), style="yellow", highlight=False, soft_wrap=True)
    return layer


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from ssl_bench.export import export

    methods = [m.strip() for m in args.method.split(",") if m.strip()] if args.method else None
    for path in export(Path(args.out), args.to, args.unit, methods):
        console.print(f"exported {path}", highlight=False, soft_wrap=True)
    return 0


def one_line(e: BaseException) -> str:
    """The message; for an error re-raised from a DataLoader worker, the original message, not the worker's traceback."""
    if isinstance(e, OSError) and e.errno == errno.ENOSPC and e.strerror:
        return e.strerror  # our own message (storage, results), without "[Errno 28]"
    text = str(e)
    if text.startswith("Caught ") and "\nOriginal Traceback" in text:
        return text.rstrip().splitlines()[-1].split(": ", 1)[-1]
    return text


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=False)
    err = Console(stderr=True)
    if args.command is None:
        parser.print_help()
        return 2
    from ssl_bench.config import ConfigError

    handlers = {
        "run": cmd_run,
        "report": cmd_report,
        "list": cmd_list,
        "detect-eval": cmd_detect_eval,
        "check": cmd_check,
        "export": cmd_export,
    }
    try:
        return handlers[args.command](args, console)
    except ConfigError as e:
        if args.debug:
            raise
        err.print(f"[red]error:[/] {escape(str(e))}", highlight=False)  # escape: `pip install -e ".[tensorboard]"`
        return 2
    except KeyboardInterrupt as e:
        again = " ".join(shlex.quote(a) for a in ["ssl-bench", *(sys.argv[1:] if argv is None else argv)])
        where = f"{e} " if str(e) else ""
        err.print(
            f"[yellow]interrupted:[/] {where}Finished work is kept; to resume, run the same command again:\n  {again}",
            highlight=False,
        )
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        if args.debug:
            raise
        err.print(f"[red]error:[/] {escape(one_line(e))}", highlight=False)
        err.print("(run with --debug for the traceback)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
