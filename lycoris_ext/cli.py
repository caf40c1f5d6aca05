"""Command line: ``python -m lycoris_ext inspect|demo|bake|convert|extract``."""

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


def _progress(args) -> bool:
    return not args.quiet and sys.stderr.isatty()


def _print_layers(report: dict) -> None:
    for row in report["layers"]:
        if row.get("written_as") == "norm":
            what = "norm (exact)"
        elif row["rank"] == 0:
            what = "no change"
        else:
            what = f"rank {row['rank']:>4}/{row['full_rank']:<5} energy {row['energy']:.6f}"
        extra = "  (bias change dropped)" if row.get("bias_dropped") else ""
        print(f"  {row['key']:<80} {what}  error {row['relative_error']:.3e}{extra}")


def _print_totals(report: dict) -> None:
    print(f"layers written: {report['layers_written']}   largest rank: {report['rank_max']}"
          + (f"   largest conv rank: {report['conv_rank_max']}" if report["conv_rank_max"] else ""))
    if report["bias_changes_dropped"]:
        print(f"bias changes dropped (a LoRA file cannot hold them): {report['bias_changes_dropped']} layers")
    print(f"relative error of the change (Frobenius, all layers): {report['relative_error']:.3e}")
    print(f"wrote {report['output']} in {report['seconds']:.1f} s")


def _bake(args) -> int:
    from .tools import bake

    rep = bake(args.checkpoint, args.networks, args.output, dtype=args.dtype, progress=_progress(args))
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    for n in rep["networks"]:
        w = f"te {n['te']:g}, unet {n['unet']:g}" + (f", lbw={n['lbw']}" if n.get("lbw") else "")
        print(f"{n['name']} ({n['shorthash']}): {w}; {n['verdict']}: {n['summary']}")
    print(f"{rep['family']} checkpoint, {rep['tensors']} tensors, {rep['layers_changed']} layers changed, dtype {rep['dtype']}")
    print(f"wrote {rep['output']} in {rep['seconds']:.1f} s")
    return 0


def _convert(args) -> int:
    from .tools import convert

    rep = convert(args.networks, args.output, rank=args.rank, energy=args.energy, conv_rank=args.conv_rank,
                  dtype=args.dtype, base=args.base, model=args.model, progress=_progress(args))
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    for n in rep["networks"]:
        print(f"{n['name']} ({n['shorthash']}): te {n['te']:g}, unet {n['unet']:g}"
              + (f", lbw={n['lbw']}" if n.get("lbw") else "") + f"; {n['verdict']}: {n['summary']}")
    _print_layers(rep)
    _print_totals(rep)
    return 0


def _extract(args) -> int:
    from .tools import extract

    rep = extract(args.base, args.tuned, args.output, rank=args.rank, energy=args.energy, conv_rank=args.conv_rank,
                  dtype=args.dtype, min_diff=args.min_diff, progress=_progress(args))
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    _print_layers(rep)
    print(f"layers equal in both (left out): {rep['layers_unchanged']}")
    _print_totals(rep)
    return 0


def _rank_args(p, what: str) -> None:
    g = p.add_argument_group("rank (one of --rank and --energy)")
    g.add_argument("--rank", type=int, help=f"rank of every layer of {what} (a layer's full rank when that is lower)")
    g.add_argument("--energy", type=float, help="per layer, the least rank keeping this fraction of the squared "
                   "Frobenius norm of the change (e.g. 0.99)")
    g.add_argument("--conv-rank", type=int, help="rank of convolutions with kernels larger than 1x1 (default: --rank)")
    p.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="dtype of the factors (default fp16)")


def _common(p) -> None:
    p.add_argument("-o", "--output", required=True, metavar="OUT.safetensors",
                   help="the file to write (written to a temporary file and renamed when complete)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


NET_HELP = ("a network file, optionally with weights as in a prompt token: NET:0.8, NET:te:unet, "
            "NET:1:lbw=MIDD (block weights: preset or list), NET:1:dyn=16")


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

    b = sub.add_parser("bake", help="a checkpoint with networks merged in, exactly as the WebUI's merge mode writes them",
                       description="Merge networks into an A1111 single-file checkpoint (SD1.x, SD2.x, SDXL), tensor by "
                       "tensor, bit-identical to what merge mode writes for the same networks and dtype. The output's "
                       "metadata records the networks, their hashes and weights.")
    b.add_argument("checkpoint", metavar="CHECKPOINT", help="the base checkpoint (.safetensors, or .ckpt read weights-only)")
    b.add_argument("networks", nargs="+", metavar="NET", help=NET_HELP)
    b.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default=None,
                   help="dtype of the output's floating tensors (default: each tensor's own); the merge is computed "
                   "from the original in this dtype, as on a model loaded in it")
    _common(b)
    b.set_defaults(func=_bake)

    c = sub.add_parser("convert", help="any network, or a weighted sum of networks, as one kohya LoRA/LoCon (also: resize)",
                       description="Write the exact change of one or more networks (any algorithm, with weights and "
                       "block weights) as one kohya-format LoRA/LoCon file (no Tucker) by a per-layer SVD; with a lower "
                       "rank this resizes. Reports per layer and overall the rank and energy kept and the relative "
                       "error of the change (Frobenius). Norm-layer changes are written as w_norm/b_norm.")
    c.add_argument("networks", nargs="+", metavar="NET", help=NET_HELP)
    _common(c)
    _rank_args(c, "the output")
    c.add_argument("--base", metavar="CHECKPOINT", help="the base checkpoint: needed for changes that depend on the "
                   "model's weights (OFT, BOFT, DoRA, IA3, GLoRA); without it the layout comes from --model")
    c.add_argument("--model", choices=("sd15", "sd2", "sdxl"), help="the model's layout when no --base is given "
                   "(default: the base model the first network was made for)")
    c.set_defaults(func=_convert)

    e = sub.add_parser("extract", help="a LoRA/LoCon from the difference of two checkpoints",
                       description="Extract a LoRA/LoCon (text encoders and UNet) from the difference of two A1111 "
                       "checkpoints of the same base model, by a per-layer SVD, with the same report as convert.")
    e.add_argument("base", metavar="BASE", help="the original checkpoint")
    e.add_argument("tuned", metavar="TUNED", help="the fine-tuned checkpoint")
    _common(e)
    _rank_args(e, "the output")
    e.add_argument("--min-diff", type=float, default=0.0,
                   help="leave out layers whose weights differ by at most this much (default 0: only equal layers)")
    e.set_defaults(func=_extract)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NetworkFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
