"""Command line: ``python -m lycoris_ext inspect FILE`` and ``python -m lycoris_ext demo``."""

from __future__ import annotations

import argparse
import json
import sys

from .errors import NetworkFileError


def _inspect(args) -> int:
    from .network import load_network
    from .summary import format_resolution, format_summary, summarize

    out = []
    status = 0
    for path in args.files:
        try:
            net = load_network(path)
        except NetworkFileError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 2
            continue
        s = summarize(net)
        if args.model:
            from .resolve import resolve
            from .resolve.inventory import model_tree

            s["resolution"] = resolve(net, model_tree(args.model, args.naming)).report()
        if args.json:
            out.append(s)
        else:
            text = format_summary(s)
            if args.model:
                text += "\n" + format_resolution(s["resolution"])
            print(text)
    if args.json and out:
        print(json.dumps(out[0] if len(out) == 1 else out, indent=2, default=str))
    return status


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(out_dir=args.out, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lycoris_ext", description="LoRA/LyCORIS network files: inspect, check, apply.")
    sub = p.add_subparsers(dest="command", required=True)
    i = sub.add_parser("inspect", help="what a network file holds, and whether it fits a model")
    i.add_argument("files", nargs="+", metavar="FILE")
    i.add_argument("--json", action="store_true", help="one JSON object (a list for several files)")
    i.add_argument("--model", choices=("sd15", "sd2", "sdxl"), help="check the keys against this model's layers")
    i.add_argument("--naming", choices=("a1111", "diffusers"), default="a1111",
                   help="the model's module names: the WebUI's (default) or diffusers/transformers'")
    i.set_defaults(func=_inspect)
    d = sub.add_parser("demo", help="write sample networks of every algorithm, apply them to a built-in model and report")
    d.add_argument("--out", default=None, help="folder for the sample files (default: a temporary folder)")
    d.add_argument("--quick", action="store_true", help="smaller model, fewer repetitions")
    d.set_defaults(func=_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NetworkFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
