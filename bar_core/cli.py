"""The command line: `bar train|sweep|report|pretrain|app|list-models|list-datasets` (also `python -m bar_core ...`).

Every declared setting (bar_core/config.py) is an option of `bar train`, made from its declaration. Bad
input ends with one line on stderr naming the value and what is allowed, exit code 2, and nothing
created or changed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from fractions import Fraction
from pathlib import Path

from .checkpoint import CheckpointError
from .config import GROUPS, SETTING, SETTINGS, ConfigError, Setting, TrainConfig
from .data import DataError, describe_datasets
from .models import ModelError, describe_models
from .presets import PRESETS, preset
from .progress import ProgressBar
from .runs import RunFolder, RunFolderError, holds_run

USER_ERRORS = (ConfigError, DataError, ModelError, CheckpointError, RunFolderError)

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


def _add_option(parser, s: Setting, default=None) -> None:
    """The option of setting `s`: --name-with-dashes, plus --no-name for an on/off setting."""
    allowed = "" if s.type is bool else f"; {s.allowed_text(with_unset=False)}"
    text = f"{s.help}{allowed} (default: {s.default_text()})".replace("%", "%%")
    kw = {"dest": s.name, "default": default, "help": text}
    if s.type is bool:
        parser.add_argument(s.flag, action=argparse.BooleanOptionalAction, **kw)
    elif s.type in (int, float):
        parser.add_argument(s.flag, type=_parse_number(s.type), metavar="N" if s.type is int else "X", **kw)
    else:
        parser.add_argument(s.flag, metavar="NAME" if s.choices else "TEXT", **kw)


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """Every declared setting, by group. Each defaults to None ("not given"), so --config FILE
    and --resume can tell what was typed; TrainConfig supplies the real defaults."""
    for group in GROUPS:
        options = parser.add_argument_group(group.lower())
        for s in SETTINGS:
            if s.group == group:
                _add_option(options, s)


def _given(args) -> dict:
    """The settings typed on the command line."""
    return {s.name: getattr(args, s.name) for s in SETTINGS if getattr(args, s.name, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bar", description="BAR: budget-aware structured pruning.")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="prune a network with BAR and write a run folder",
                           description="Prune with BAR: load the teacher, prune to the budget, fine-tune. "
                                       "With no options it runs the default demo (resnet8, shipped "
                                       "Fashion-MNIST subset and teacher, B = 1/4). Numbers may be "
                                       "fractions (--budget 1/4); docs/settings.md lists every setting.")
    train.add_argument("--out", help="run folder to write (default: runs/<model>-<dataset>-b<budget>-<time>)")
    _add_start_options(train)
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the stopped run in --out")
    mode.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_config_options(train)
    sweep = sub.add_parser("sweep", help="train one run per (budget, seed) into a sweep folder",
                           description="A budget sweep: one BAR run per (budget, seed) in the folder --out, each in "
                                       "its own run folder (b0.25-s0, ...), with sweep.json (what was asked) and "
                                       "sweep.csv (one summary row per run, the runs table's columns). The same "
                                       "command again skips finished runs, resumes stopped ones from their "
                                       "checkpoint and starts the rest; new budgets or seeds extend the sweep, other "
                                       "settings are refused. Ctrl-C stops it (exit code 130; each run keeps its "
                                       "checkpoint). Every option of `bar train` applies to every run.")
    sweep.add_argument("--budgets", required=True, metavar="LIST",
                       help="comma-separated budgets B in (0, 1], fractions allowed: 1/2,1/4,1/8,1/16")
    sweep.add_argument("--seeds", metavar="LIST", help="comma-separated seeds >= 0 (default: --seed, else 0)")
    sweep.add_argument("--out", required=True, help="the sweep folder (created, or continued)")
    sweep.add_argument("--workers", type=_parse_number(int), default=1, metavar="N",
                       help="runs trained at once, each in its own `bar train` process with cores // N torch "
                            "threads unless --threads is given, and no progress bar (default: 1)")
    sweep.add_argument("--ray", metavar="WHERE",
                       help="train each run as a Ray task (needs the ray extra): local (a Ray instance on this "
                            "machine), auto (the cluster this machine is in) or a cluster ADDRESS; every node must "
                            "see the sweep folder at the same path")
    _add_start_options(sweep)
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_config_options(sweep)
    report = sub.add_parser("report", help="write every figure of a run or sweep (PNG + HTML) and an index.html",
                            description="A report of a run folder or a sweep folder: every figure as PNG and as "
                                        "standalone HTML, the tables as CSV, and an index.html showing them with "
                                        "the settings and the summary.")
    report.add_argument("path", metavar="RUN_OR_SWEEP", help="a run folder or a sweep folder")
    report.add_argument("--out", required=True, help="folder to write the report into")
    pre = sub.add_parser("pretrain", help="train a dense teacher checkpoint to prune later")
    for name in ("model", "dataset", "data_root"):
        _add_option(pre, SETTING[name], default=SETTING[name].default)
    pre.add_argument("--epochs", type=_parse_number(int), default=15, metavar="N", help="training epochs (default: 15)")
    pre.add_argument("--lr", type=_parse_number(float), default=2e-3, metavar="X",
                     help="initial Adam learning rate, cosine decay (default: 0.002)")
    for name in ("batch_size", "augment", "seed", "threads"):
        _add_option(pre, SETTING[name], default=SETTING[name].default)
    pre.add_argument("--out", required=True, help="checkpoint file to write")
    sub.add_parser("app", help="serve the dashboard on 127.0.0.1 (extra options go to streamlit run)",
                   description="Serve BAR Explorer's dashboard on 127.0.0.1 (the first free port from 8501). "
                               "Options after `app` go to `streamlit run`, e.g. `bar app --server.port 8600`; "
                               "`bar app --share` serves it on the LAN for a classroom: students watch, only the "
                               "host's link (printed at start, with a secret token) can start, stop or delete runs.")
    sub.add_parser("list-models", help="the models BAR can prune")
    sub.add_parser("list-datasets", help="the datasets and whether each is available here")
    return parser


def read_config_file(name: str) -> TrainConfig:
    """The settings of a config.json (a run's, or one written by hand with every setting): read strictly,
    so a file from another version or a damaged one is refused with the key or the problem named."""
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {name!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {name!r} is a folder; give its config.json") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {name!r} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"config file {name!r} cannot be read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {name!r} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return TrainConfig.from_file_dict(data, where=f"config file {name!r}")


def _add_start_options(parser: argparse.ArgumentParser) -> None:
    """What the settings start from: TrainConfig's defaults, a config.json, or a named preset."""
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--config", help="read settings from a config.json (options given here override it)")
    start.add_argument("--preset", metavar="NAME", help="start from a preset (options given here override it): "
                       + "; ".join(f"{p.name}: {p.label}" for p in PRESETS.values()))


def _config_from_args(args) -> TrainConfig:
    if args.config:
        base = read_config_file(args.config).to_dict()
    else:
        base = preset(args.preset).config.to_dict() if args.preset else {}
    return TrainConfig.from_dict({**base, **_given(args)}).validate()


def _default_out(cfg: TrainConfig) -> Path:
    return Path("runs") / f"{cfg.model}-{cfg.dataset}-b{cfg.budget:g}-{time.strftime('%Y%m%d-%H%M%S')}"


def cmd_train(args) -> int:
    from . import distributed

    try:
        return _train(args)
    finally:
        distributed.cleanup()


def _train(args) -> int:
    from . import distributed
    from .trainer import Trainer

    main_rank = distributed.is_main()
    if args.resume:
        if not args.out:
            raise ConfigError("--resume needs --out FOLDER, the run to continue")
        given = _given(args)
        fixed = [SETTING[n].flag for n in given if not SETTING[n].resumable]
        if fixed or args.config or args.preset:
            flags = [s.flag for s in SETTINGS if s.resumable]
            may = ", ".join(flags[:-1]) + " and " + flags[-1]
            dropped = ", ".join(fixed) or ("--config" if args.config else "--preset")
            raise ConfigError(f"--resume continues the run with its own settings; drop {dropped} "
                              f"(only {may} may change)")
        folder, cfg, state = RunFolder.open_for_resume(args.out)  # every torchrun rank loads the same checkpoint
        cfg = cfg.replace(**given)  # only where it runs: what it computes may not change
        _start_ranks(cfg)
        trainer = Trainer(_rank_config(cfg).validate()).prepare()
        trainer.load_checkpoint_state(state)
        trainer.run_folder = folder if main_rank else None
    else:
        cfg = _config_from_args(args)
        if args.out is not None and not args.out.strip():
            raise ConfigError("--out is empty; name the run folder to write (or leave --out out for runs/<name>)")
        out = Path(args.out) if args.out else _default_out(cfg)
        if holds_run(out) and not args.overwrite:  # fail before the slow part
            raise RunFolderError(f"{str(out)!r} already holds a run; use --resume to continue it or --overwrite to replace it")
        _start_ranks(cfg)
        trainer = Trainer(_rank_config(cfg)).prepare()  # every bad input raises here, before anything is written
        created, problem = None, None
        if main_rank:
            try:
                created = RunFolder.create(out, cfg, overwrite=args.overwrite)
            except RunFolderError as exc:
                problem = exc
        if not distributed.all_agree(problem is None):  # the other ranks must not train without rank 0
            if problem is not None:
                raise problem
            return 2  # rank 0 prints the reason
        trainer.run_folder = created
    if not args.quiet and main_rank:
        trainer.subscribe(ProgressBar())

    def on_signal(signum, frame):
        if main_rank:
            print(f"\n{signal.Signals(signum).name}: stopping after this step, saving a checkpoint and the summary "
                  "(resume with --resume) ...", file=sys.stderr)
        if distributed.active():
            distributed.request_stop()  # every rank stops before the same step, or a collective would hang
        else:
            trainer.stop()
    # SIGTERM (a scheduler, `kill`, a container stopping) saves the run as Ctrl-C does
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        summary = trainer.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if os.environ.get("BAR_RANK_GATES"):
        distributed.save_rank_gates(trainer.student, os.environ["BAR_RANK_GATES"])
    if not main_rank:
        return {"done": 0, "stopped": 130}.get(summary["state"], 1)
    _print_summary(summary, trainer.run_folder.path)
    return {"done": 0, "stopped": 130}.get(summary["state"], 1)


def _start_ranks(cfg: TrainConfig) -> None:
    """Under torchrun: check that the global batch splits over the ranks, then join the process group."""
    from . import distributed
    from .trainer import resolve_device

    distributed.check_batch_size(cfg.batch_size)
    distributed.init(resolve_device(cfg.device))


def _rank_config(cfg: TrainConfig) -> TrainConfig:
    """Rank 0 logs to TensorBoard; the other ranks write nothing."""
    from . import distributed
    return cfg if distributed.is_main() else cfg.replace(tensorboard=None)


def _print_summary(s: dict, path: Path) -> None:
    def pct(x):
        return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"
    health = s.get("health") or []
    # a budget "met" by a collapsed network is no success
    budget_word = ("NOT met" if s.get("budget_met") is False else "under it, but the run is NOT healthy" if health
                   else "met")
    budget_text = (f"budget {s['budget']:g}, {budget_word}" if s.get("budget") is not None
                   else f"no budget: {s.get('method', 'l0')}")
    lines = [f"run folder:        {path}",
             f"state:             {s['state']}" + (f" ({s['error']})" if s.get("error") else ""),
             f"volume V/V0:       {s['volume_ratio']:.4f} ({budget_text}; "
             f"pruning factor {s['pruning_factor'] or float('nan'):.3g}x)",
             f"channels kept:     {s['kept_channels']} of {s['total_channels']}",
             f"teacher accuracy:  {pct(s['teacher_accuracy'])}",
             f"pruned accuracy:   {pct(s['pruned_accuracy'])}",
             f"steps over budget: {s['steps_over_budget']} of {s['steps']}",
             f"wall time:         {s['wall_seconds']:.1f} s on {s['device']} ({s['threads']} threads)"]
    if s["state"] == "error":
        lines.append("health:            n/a (the run ended in an error)")
    else:
        lines += [f"health:            {finding}" for finding in health] or ["health:            ok"]
    print("\n".join(lines))


def cmd_sweep(args) -> int:
    from .sweep import main as sweep_main
    return sweep_main(args)


def cmd_report(args) -> int:
    from .report import main as report_main
    return report_main(args)


def _check_teacher_out(out: Path) -> None:
    """Where `pretrain` writes, checked before a minute of training: a file path in a writable folder."""
    if out.is_dir():
        raise ConfigError(f"--out {str(out)!r} is a folder; give the checkpoint file to write, e.g. {str(out / 'teacher.pt')!r}")
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise ConfigError(f"--out {str(out)!r}: a file stands where a folder of its path should be")
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"--out {str(out)!r}: cannot write in {str(parent)!r}")


def cmd_pretrain(args) -> int:
    from .pretrain import train_teacher

    out = Path(args.out)
    if args.epochs < 1:
        raise ConfigError(f"--epochs must be >= 1 (an untrained teacher prunes nothing useful), got {args.epochs}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise ConfigError(f"--lr must be a finite number > 0, got {args.lr!r}")
    problem = TrainConfig(model=args.model, dataset=args.dataset, data_root=args.data_root, batch_size=args.batch_size,
                          seed=args.seed, threads=args.threads, augment=args.augment, teacher="none")
    problem.validate()
    _check_teacher_out(out)
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
    handler = {"train": cmd_train, "sweep": cmd_sweep, "report": cmd_report, "pretrain": cmd_pretrain, "list-models": cmd_list_models,
               "list-datasets": cmd_list_datasets}[args.command]
    try:
        if args.command != "train" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            raise ConfigError(f"`bar {args.command}` does not run under torchrun; only `bar train` trains data-parallel")
        return handler(args)
    except USER_ERRORS as exc:
        if os.environ.get("RANK", "0") == "0":  # under torchrun every rank fails alike: one line, from rank 0
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
