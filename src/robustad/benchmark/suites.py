"""The benchmark suites: which cells, at which budget, attacked how."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from robustad.data.registry import dataset_info, preset_for, probe_image_side
from robustad.errors import ConfigError
from robustad.evaluation.suite import AttackSpec, SuiteConfig
from robustad.methods.catalog import ABLATIONS, BASELINES, METHODS, PATCH_REFERENCE_MIN_SIDE, REFERENCES, default_method

ALL_METHODS = ("cobra", *BASELINES, *ABLATIONS)


@dataclass(frozen=True)
class Cell:
    dataset: str
    normal: str  # class index or category name, as text
    method: str
    seed: int = 0

    @property
    def id(self) -> str:
        return f"{self.dataset}-{self.normal}-{self.method}-s{self.seed}"


@dataclass
class BenchmarkSuite:
    name: str
    scale: str  # "cpu" | "paper": which per-data-set preset
    datasets: dict[str, list[str]]  # data set -> normal classes / categories (one cell each)
    methods: tuple[str, ...] = ALL_METHODS
    seeds: tuple[int, ...] = (0,)
    max_train: int | None = 3000
    max_test: int | None = 200
    train_overrides: dict[str, Any] = field(default_factory=dict)
    # attacks whose worst case per image is the cell's attacked AUROC, at the preset's evaluation.eps
    attacks: tuple[AttackSpec, ...] = ()
    sweep_factors: tuple[float, ...] = (0.25, 0.5, 2.0, 4.0)  # PGD sweep at these multiples of eps
    sweep_steps: int = 10
    description: str = ""
    # extra arguments of robustad.data.registry.load_dataset per data set: where the user's files are
    # (root; normal_dir, abnormal_dirs, normal_test_dir, mask_dir for folder)
    data_args: dict[str, dict[str, Any]] = field(default_factory=dict)

    def data_kwargs(self, dataset: str, normal: str) -> dict[str, Any]:
        """load_dataset's arguments for one cell's data: the class/category and where the files are."""
        extra = dict(self.data_args.get(dataset, {}))
        if dataset_info(dataset).name == "folder":
            return extra  # a folder is its own one category
        if dataset_info(dataset).kind == "anomaly":
            return {**extra, "category": normal}
        return {**extra, "normal_classes": [int(normal)] if normal.isdigit() else [normal]}

    def image_side(self, dataset: str, normal: str) -> int | None:
        """The larger side of the cell's training images, read up front (chooses the preset)."""
        args = self.data_args.get(dataset, {})
        return probe_image_side(dataset, args.get("root"), normal, args.get("normal_dir"))

    def preset(self, dataset: str, normal: str) -> str:
        return preset_for(dataset, self.scale, self.image_side(dataset, normal))

    def cells(self) -> list[Cell]:
        return [Cell(d, str(c), m, s) for d, classes in self.datasets.items() for c in classes
                for m in self.methods for s in self.seeds]

    def attack_suite(self, eps: float) -> SuiteConfig:
        sweep = tuple(min(1.0, eps * f) for f in self.sweep_factors)
        attacks = list(self.attacks)
        if sweep:
            attacks.append(AttackSpec("pgd", name=f"pgd-{self.sweep_steps}-sweep", steps=self.sweep_steps,
                                      schedule="cosine", eps=sweep))
        return SuiteConfig(name=f"benchmark-{self.name}", eps=(eps,), targets=("both",), attacks=tuple(attacks),
                           num_test=self.max_test or 0).validate()

    def select(self, methods=None, datasets=None, classes=None, seeds=None) -> "BenchmarkSuite":
        """A copy limited to some methods / data sets / classes / seeds (None keeps all)."""
        for m in methods or ():
            if m not in METHODS:
                raise ConfigError(f"unknown method {m!r}; known: {', '.join(METHODS)}")
        for d in datasets or ():
            if d not in self.datasets:
                raise ConfigError(f"suite {self.name} has no data set {d!r}; it has {', '.join(self.datasets)}")
        data = {d: [c for c in cs if classes is None or c in classes]
                for d, cs in self.datasets.items() if datasets is None or d in datasets}
        copy = BenchmarkSuite(**{**asdict(self), "datasets": {d: cs for d, cs in data.items() if cs}})
        copy.attacks = self.attacks
        if methods:
            copy.methods = tuple(methods)
        if seeds:
            copy.seeds = tuple(seeds)
        if not copy.cells():
            raise ConfigError("the selection leaves no cells to run")
        return copy

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["attacks"] = [asdict(a) for a in self.attacks]
        return d


def _suites() -> dict[str, BenchmarkSuite]:
    ten = [str(c) for c in range(10)]
    quick = BenchmarkSuite(
        name="cpu-quick", scale="cpu", datasets={"mnist": ["3"]}, max_train=3000, max_test=100,
        # a third of the cpu preset's 120 steps: every method gets the same 40 steps of 32 images
        train_overrides={"train.epochs": 1, "train.steps_per_epoch": 40, "train.warmup_epochs": 0},
        attacks=(AttackSpec("pgd", steps=20, schedule="cosine"), AttackSpec("apgd", steps=20),
                 AttackSpec("square", queries=100)),
        sweep_factors=(0.5, 2.0), sweep_steps=10,
        description="MNIST digit 3, every method, 40 training steps, 100 test images; worst case of "
                    "PGD-20, APGD-20 and Square-100 at 8/255. Under 30 minutes on 2 CPU cores.",
    )
    full = BenchmarkSuite(
        name="cpu-full", scale="cpu",
        datasets={"mnist": ten, "fashion-mnist": ten, "textures": ["brick", "grass", "gravel"]},
        max_train=3000, max_test=200,
        attacks=(AttackSpec("pgd", steps=50, restarts=2, schedule="cosine"), AttackSpec("apgd", steps=50),
                 AttackSpec("square", queries=400),
                 AttackSpec("adaptive", steps=20, variants=("lse:0.02", "similarity", "shift", "eot"),
                            eot_samples=2, schedule="cosine")),
        description="MNIST and Fashion-MNIST, all ten classes, and the semi-synthetic textures; every method "
                    "at the cpu presets' budget; 200 test images; worst case of PGD-50x2, APGD-50, Square-400 "
                    "and the adaptive attacks. Hours on a CPU; resumable.",
    )
    paper = BenchmarkSuite(
        name="paper", scale="paper",
        datasets={"fashion-mnist": ten, "mnist": ten, "textures": ["brick", "grass", "gravel"]},
        max_train=None, max_test=2000,
        attacks=(AttackSpec("pgd", steps=1000, schedule="cosine"), AttackSpec("apgd", steps=100, restarts=2),
                 AttackSpec("square", queries=1000),
                 AttackSpec("adaptive", steps=100, variants=("lse:0.02", "similarity", "shift", "eot"),
                            eot_samples=4, schedule="cosine")),
        sweep_steps=20,
        description="The paper-scale presets (ResNet-18 width 64, 100 epochs): for a GPU.",
    )
    validation = BenchmarkSuite(
        name="validation", scale="cpu",
        datasets={"textures": ["brick", "grass", "gravel"], "surfaces": ["cell", "tissue", "stars"],
                  "fashion-mnist": ["0", "3", "7"]},
        methods=("cobra-patch", "cobra-ensemble", "cobra", *REFERENCES), seeds=(0, 1, 2), max_train=500, max_test=100,
        attacks=(AttackSpec("pgd", steps=50, restarts=2, schedule="cosine"), AttackSpec("apgd", steps=50),
                 AttackSpec("square", queries=400),
                 AttackSpec("adaptive", steps=20, variants=("lse:0.02", "similarity", "shift", "eot"),
                            eot_samples=2, schedule="cosine")),
        description="Data the detectors were not developed on, next to the reference detectors: the semi-synthetic "
                    "textures and surfaces (64 px, 2/255) and three Fashion-MNIST classes (28 px, 8/255), 500 "
                    "training images, 100 test images (half anomalous), three seeds; worst case of PGD-50x2, APGD-50, Square-400 "
                    "and the adaptive attacks. Hours on a CPU; resumable.",
    )
    return {s.name: s for s in (quick, full, paper, validation)}


def suite_for_data(dataset: str, root: str | None = None, categories: list[str] | tuple[str, ...] = (),
                   normal_dir: str | None = None, abnormal_dirs: list[str] | tuple[str, ...] = (),
                   test_normal_dir: str | None = None, mask_dir: str | None = None,
                   methods: tuple[str, ...] | None = None) -> BenchmarkSuite:
    """`robustad benchmark --data ...`: own_data_suite for a data set named as on the command line.

    Folder layout takes its directories (its one class is the normal folder's name); the other formats
    take a root and the categories or classes to benchmark (an anomaly-kind data set without
    categories benchmarks every category found under the root). The image side is read from the first
    class's files, so the default detector is the one training would choose."""
    info = dataset_info(dataset)
    if info.name == "folder":
        if not normal_dir or not abnormal_dirs:
            raise ConfigError("--data folder needs --normal-dir (normal training images) and --abnormal-dir "
                              "(anomalous test images) to benchmark on")
        data_args = {"normal_dir": normal_dir, "abnormal_dirs": list(abnormal_dirs),
                     "normal_test_dir": test_normal_dir, "mask_dir": mask_dir}
        classes = [Path(normal_dir).name]
    else:
        if normal_dir or abnormal_dirs or test_normal_dir or mask_dir:
            raise ConfigError("--normal-dir/--abnormal-dir/--test-normal-dir/--mask-dir belong to --data folder")
        data_args = {"root": root}
        classes = list(categories or [])
        if info.kind == "anomaly" and not classes:
            found = info.categories(root) if root else []
            if not found:
                raise ConfigError(f"name the categories to benchmark with --category (none found under {root})")
            classes = list(found)
        if info.kind == "classes" and not classes:
            raise ConfigError(f"name the normal classes of {info.name} with --category, e.g. --category 0,3")
    side = probe_image_side(info.name, data_args.get("root"), classes[0], data_args.get("normal_dir"))
    return own_data_suite(info.name, classes, data_args, side, methods=methods)


def own_data_suite(dataset: str, classes: list[str], data_args: dict[str, Any], image_side: int | None,
                   methods: tuple[str, ...] | None = None, seeds: tuple[int, ...] = (0,)) -> BenchmarkSuite:
    """A benchmark on the user's own files: the default detector for their image size, COBRA and the
    reference detectors, attacked as in the validation suite."""
    default = default_method(image_side)
    references = tuple(r for r in REFERENCES if not (METHODS[r].detector == "pixel-patch-knn" and image_side is not None
                                                     and image_side < PATCH_REFERENCE_MIN_SIDE))
    chosen = methods or tuple(dict.fromkeys((default, "cobra", *references)))
    validation = _suites()["validation"]
    return BenchmarkSuite(
        name="own-data", scale="cpu", datasets={dataset: list(classes)}, methods=tuple(chosen), seeds=tuple(seeds),
        max_train=None, max_test=200, attacks=validation.attacks, data_args={dataset: data_args},
        description=f"your {dataset} data ({', '.join(classes)}): {', '.join(chosen)}; worst case of PGD-50x2, "
                    "APGD-50, Square-400 and the adaptive attacks at the data's budget",
    )


BENCHMARK_SUITES = tuple(_suites())


def benchmark_suite(name: str) -> BenchmarkSuite:
    suites = _suites()
    if name not in suites:
        raise ConfigError(f"unknown benchmark suite {name!r}; available: {', '.join(suites)}")
    return suites[name]
