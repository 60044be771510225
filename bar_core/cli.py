"""The command line: `bar train|pretrain|app|list-models|list-datasets` (also `python -m bar_core ...`).

Every TrainConfig field is an option (generated from the dataclass, so none can be forgotten). Bad
input ends with one line on stderr naming the value and what is allowed, exit code 2, and nothing
created or changed.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path

from .checkpoint import CheckpointError
from .config import ConfigError, TrainConfig
from .data import DataError, describe_datasets
from .models import ModelError, describe_models
from .progress import ProgressBar
from .runs import RunFolder, RunFolderError, holds_run

USER_ERRORS = (ConfigError, DataError, ModelError, CheckpointError, RunFolderError)

HELP = {
    "model": "architecture to prune (see list-models)",
    "dataset": "dataset (see list-datasets)",
    "data_root": "folder holding the dataset files (cifar10/100, imagefolder, full fashion-mnist)",
    "download": "allow torchvision to download the dataset (needs network)",
    "train_limit": "use only the first N training images", "test_limit": "use only the first N test images",
    "augment": "random crop and flip while training",
    "teacher": "checkpoint to prune: 'default' (shipped), a path, or 'none' to pretrain first",
    "budget": "final volume budget B as a fraction of V0, in (0, 1]; '1/4' works too",
    "schedule": "how b moves down to B*V0: sigmoid, exp or linear",
    "schedule_k": "schedule steepness (default 10 for sigmoid, 4 for exp)",
    "margin": "m in a = B*V0 - m(1+tau)V0", "tau": "b starts at (1+tau)*V0",
    "barrier_cap": "finite cap for the barrier f in the loss",
    "lam": "lambda, weight of f * L_S (units of the area-weighted volume)",
    "weighted_volume": "area-weighted L_S (BAR) or a plain count of P(z>0)",
    "kd": "distil from the frozen unpruned teacher", "kd_temperature": "distillation temperature T",
    "kd_alpha": "weight of the distillation term (1 - it weighs cross-entropy)",
    "gate_lr": "Adam learning rate of the gates' log alpha", "gate_init": "initial log alpha of every gate",
    "beta": "Hard Concrete temperature", "gamma": "Hard Concrete lower stretch limit (< 0)",
    "zeta": "Hard Concrete upper stretch limit (> 1)",
    "pretrain_epochs": "epochs of pretraining when --teacher none", "prune_epochs": "epochs of BAR pruning",
    "finetune_epochs": "epochs of fine-tuning at the reached architecture",
    "extra_prune_steps": "most extra steps at b = B*V0 if V is still over budget when the schedule ends",
    "batch_size": "training batch size", "lr": "Adam learning rate of the weights while pruning",
    "finetune_lr": "initial learning rate of fine-tuning (cosine decay)", "weight_decay": "weight decay (not on gates)",
    "max_steps_per_epoch": "cap steps per epoch (quick checks)", "seed": "random seed",
    "device": "auto, cpu or cuda", "threads": "torch CPU threads", "channels_last": "channels-last memory format",
}


def _parse_number(kind):
    def parse(text: str):
        try:
            if kind is float and "/" in text:
                return float(Fraction(text))
            value = kind(text)
        except (ValueError, ZeroDivisionError):
            raise argparse.ArgumentTypeError(f"expected a{'n integer' if kind is int else ' number'}, got {text!r}") from None
        return value
    parse.__name__ = kind.__name__
    return parse


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        kw = {"dest": f.name, "default": None, "help": f"{HELP.get(f.name, '')} (default: {default})"}
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.type in ("int", "int | None"):
            parser.add_argument(flag, type=_parse_number(int), metavar="N", **kw)
        elif f.type in ("float", "float | None"):
            parser.add_argument(flag, type=_parse_number(float), metavar="X", **kw)
        else:
            parser.add_argument(flag, metavar="TEXT", **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bar", description="BAR: budget-aware structured pruning.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="prune a network with BAR and write a run folder",
                           description="Prune with BAR: load the teacher, prune to the budget, fine-tune. "
                                       "With no options it runs the default demo (resnet8, shipped "
                                       "Fashion-MNIST subset and teacher, B = 1/4).")
    train.add_argument("--out", help="run folder to write (default: runs/<model>-<dataset>-b<budget>-<time>)")
    train.add_argument("--config", help="read settings from a config.json (options given here override it)")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the stopped run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(train)
    pre = sub.add_parser("pretrain", help="train a dense teacher checkpoint to prune later")
    pre.add_argument("--model", default="resnet8")
    pre.add_argument("--dataset", default="fashion-mnist-subset")
    pre.add_argument("--data-root", dest="data_root")
    pre.add_argument("--epochs", type=_parse_number(int), default=15)
    pre.add_argument("--lr", type=_parse_number(float), default=2e-3)
    pre.add_argument("--batch-size", dest="batch_size", type=_parse_number(int), default=128)
    pre.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False)
    pre.add_argument("--seed", type=_parse_number(int), default=0)
    pre.add_argument("--threads", type=_parse_number(int))
    pre.add_argument("--out", required=True, help="checkpoint file to write")
    app = sub.add_parser("app", help="serve the dashboard on 127.0.0.1 (extra options go to streamlit run)",
                         description="Serve BAR Explorer's dashboard on 127.0.0.1 (the first free port from 8501). "
                                     "Options after `app` go to `streamlit run`, e.g. `bar app --server.port 8600`.")
    sub.add_parser("list-models", help="the models BAR can prune")
    sub.add_parser("list-datasets", help="the datasets and whether each is available here")
    return parser


def _config_from_args(args) -> TrainConfig:
    base = {}
    if args.config:
        path = Path(args.config)
        try:
            base = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {args.config!r} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config file {args.config!r} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
                 if f.name != "extra" and getattr(args, f.name, None) is not None}
    return TrainConfig.from_dict({**base, **overrides}).validate()


def _default_out(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.model}-{cfg.dataset}-b{cfg.budget:g}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args) -> int:
    from .trainer import Trainer

    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out FOLDER, the run to continue")
        given = [f.name for f in dataclasses.fields(TrainConfig)
                 if f.name not in ("extra", "device", "threads") and getattr(args, f.name, None) is not None]
        if given or args.config:
            what = ", ".join("--" + n.replace("_", "-") for n in given) or "--config"
            raise ConfigError(f"--resume continues the run with its own settings; drop {what} "
                              f"(only --device and --threads may change)")
        folder, cfg, state = RunFolder.open_for_resume(args.out)
        for name in ("device", "threads"):  # where it runs may change; what it computes may not
            if getattr(args, name) is not None:
                cfg = cfg.replace(**{name: getattr(args, name)})
        trainer = Trainer(cfg.validate()).prepare()
        trainer.load_checkpoint_state(state)
        trainer.run_folder = folder
    else:
        cfg = _config_from_args(args)
        out = Path(args.out) if args.out else _default_out(cfg)
        if holds_run(out) and not args.overwrite:  # fail before the slow part
            raise RunFolderError(f"{str(out)!r} already holds a run; use --resume to continue it or --overwrite to replace it")
        trainer = Trainer(cfg).prepare()  # every bad input raises here, before anything is written
        trainer.run_folder = RunFolder.create(out, cfg, overwrite=args.overwrite)
    if not args.quiet:
        trainer.subscribe(ProgressBar())

    def on_signal(signum, frame):
        print("\nstopping: saving a checkpoint (resume with --resume) ...", file=sys.stderr)
        trainer.stop()
    previous = signal.signal(signal.SIGINT, on_signal)
    try:
        summary = trainer.run()
    finally:
        signal.signal(signal.SIGINT, previous)
    _print_summary(summary, trainer.run_folder.path)
    return {"done": 0, "stopped": 130}.get(summary["state"], 1)


def _print_summary(s: dict, path: Path) -> None:
    def pct(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"
    lines = [f"run folder:        {path}",
             f"state:             {s['state']}" + (f" ({s['error']})" if s.get("error") else ""),
             f"volume V/V0:       {s['volume_ratio']:.4f} (budget {s['budget']:g}, "
             f"{'met' if s['budget_met'] else 'NOT met'}; pruning factor {s['pruning_factor']:.3g}x)",
             f"channels kept:     {s['kept_channels']} of {s['total_channels']}",
             f"teacher accuracy:  {pct(s['teacher_accuracy'])}",
             f"pruned accuracy:   {pct(s['pruned_accuracy'])}",
             f"steps over budget: {s['steps_over_budget']} of {s['steps']}",
             f"wall time:         {s['wall_seconds']:.1f} s on {s['device']} ({s['threads']} threads)"]
    print("\n".join(lines))


def cmd_pretrain(args) -> int:
    from .pretrain import train_teacher

    out = Path(args.out)
    result = train_teacher(args.model, args.dataset, out, data_root=args.data_root, epochs=args.epochs, lr=args.lr,
                           batch_size=args.batch_size, augment=args.augment, seed=args.seed, threads=args.threads,
                           log=lambda msg: print(msg, file=sys.stderr))
    print(f"teacher {args.model} on {args.dataset}: test accuracy {100 * result['accuracy']:.2f}% -> {out}")
    return 0


def cmd_list_models(args) -> int:
    from .models import DEFAULT_MODEL
    for m in describe_models():
        print(f"{m['name']:<10} {m['description']}{'  [default]' if m['name'] == DEFAULT_MODEL else ''}")
    return 0


def cmd_list_datasets(args) -> int:
    for d in describe_datasets():
        here = "available" if d.get("available") else "not here"
        print(f"{d['name']:<22} {here:<10} {d.get('description', '')}")
    return 0


def cmd_app(streamlit_args: list[str]) -> int:
    """Replace this process with the dashboard's launcher (`python -m bar_app`): the library itself
    never imports streamlit, and Ctrl-C then reaches the server directly."""
    import importlib.util
    import os

    if importlib.util.find_spec("bar_app") is None:
        print("error: the dashboard package bar_app is not installed here; pip install bar-explorer", file=sys.stderr)
        return 2
    os.execv(sys.executable, [sys.executable, "-m", "bar_app", *streamlit_args])
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv[:1] == ["app"] and not {"-h", "--help"} & set(argv[1:]):
        return cmd_app(argv[1:])  # everything after `app` belongs to `streamlit run`
    args = parser.parse_args(argv)
    handler = {"train": cmd_train, "pretrain": cmd_pretrain, "list-models": cmd_list_models,
               "list-datasets": cmd_list_datasets}[args.command]
    try:
        return handler(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
