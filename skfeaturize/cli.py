"""The ``skfeaturize`` command: ``embed`` (bulk featurization into Parquet) and ``layers`` (discovery).

Run ``skfeaturize --help``, ``skfeaturize embed --help`` or ``skfeaturize layers --help``.
"""

from __future__ import annotations

import argparse
import json
import sys

_EPILOG_EMBED = """\
examples:
  skfeaturize embed photos/ --out photos.parquet --featurizer image --backbone resnet50 --layer layer4
  skfeaturize embed reviews.csv --column text --id-column review_id --out reviews.parquet \\
      --featurizer text --model sentence-transformers/all-MiniLM-L6-v2 --pooling mean
  skfeaturize embed corpus.txt --out corpus.npy --format npy --featurizer words --model glove.txt
  skfeaturize embed photos/ --out photos.parquet --param weights=null --param precision='"fp32"'
  skfeaturize embed photos/ --out photos.parquet --config job.yaml --engine ray --ray-address auto

Rerunning the same command after a crash, Ctrl-C, a full disk or a bad item (--on-error raise) resumes
where it stopped; a different featurizer or parameters, or committed items whose content changed, are
refused (use --overwrite to start over). With --cache DIR the embeddings also fill the featurizer's cache,
so a later GridSearchCV with cache=DIR starts warm.

The config file (YAML or JSON) holds the same options with underscores (chunk_size: 512) and a
`params:` mapping of featurizer parameters; options given on the command line win.
"""


def parse_value(text: str):
    """``--param`` values: JSON first (``1``, ``0.5``, ``true``, ``null``, ``[1, 2]``, ``"x"``), then
    Python spellings ``None``/``True``/``False``, else the string as it is."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    low = text.strip()
    if low in ("None", "none", "~"):
        return None
    if low in ("True", "False"):
        return low == "True"
    return text


def _param(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param {text!r}: expected KEY=VALUE (e.g. --param batch_size=64)")
    key, value = text.split("=", 1)
    key = key.strip().replace("-", "_")
    if not key:
        raise argparse.ArgumentTypeError(f"--param {text!r}: the key is empty")
    return key, parse_value(value)


def load_config(path: str) -> dict:
    """A job config file: YAML (``.yaml``/``.yml``, needs PyYAML) or JSON."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.lower().endswith((".yaml", ".yml")):
        from ._optional import import_optional

        yaml = import_optional("yaml", "cli")
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"Config file {path!r} must hold a mapping of options; got {type(data).__name__}.")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="skfeaturize",
        description="Turn images, texts and words into features with pretrained networks. Commands: "
                    "`embed` featurizes a folder or a table into Parquet (streaming, resumable, local or "
                    "on Ray); `layers` lists a backbone's layers.",
    )
    parser.add_argument("--version", action="version", version=f"skfeaturize {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    e = sub.add_parser(
        "embed", help="featurize a folder of images or a table/text file into Parquet or .npy",
        description="Featurize every item of INPUT into OUT, chunk by chunk, with a crash-safe manifest.",
        epilog=_EPILOG_EMBED, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("input", metavar="INPUT",
                   help="a folder of images (recursive), a CSV/TSV, Parquet or JSONL table, or a text file "
                        "with one document per line")
    e.add_argument("--out", "-o", help="output: a Parquet folder (read with pandas.read_parquet(OUT)) or, "
                                       "with --format npy, an .npy file (required)")
    g = e.add_argument_group("featurizer")
    g.add_argument("--featurizer", "-f",
                   help="image, text, words, or package.module:Class (default: image)")
    g.add_argument("--backbone", "--model", "--vectors", dest="model", metavar="NAME",
                   help="the featurizer's model: image backbone, text model id/folder, or word vectors")
    g.add_argument("--layer", type=parse_value, help="layer: an int, a name, or a JSON list")
    g.add_argument("--pooling", help="pooling (image: avg, max, gem, ...; text: mean, cls, ...)")
    g.add_argument("--batch-size", type=int, help="featurizer batch size")
    g.add_argument("--device", help="auto, cpu, cuda, cuda:1, mps")
    g.add_argument("--param", "-p", action="append", type=_param, default=[], metavar="KEY=VALUE",
                   help="any featurizer parameter (repeatable); VALUE is parsed as JSON, "
                        "None/True/False, or else kept as a string")
    g.add_argument("--fit-rows", type=int,
                   help="0: pretrained, fit(None) (default); N: fit on the first N items; -1: on all")
    g.add_argument("--cache", help="embedding cache folder (read and filled; a later GridSearchCV with "
                                   "cache=DIR starts warm)")
    i = e.add_argument_group("input")
    i.add_argument("--column", "-c", help="table column holding the samples (paths or texts)")
    i.add_argument("--id-column", help="table column holding the ids (default: the row number)")
    i.add_argument("--extensions", help="comma-separated image extensions for a folder input "
                                         "(default: jpg,jpeg,png,bmp,gif,tif,tiff,webp,ppm,pgm)")
    i.add_argument("--root", help="folder that relative image paths in a table are relative to "
                                  "(default: the table's folder)")
    i.add_argument("--encoding", help="text file encoding (default utf-8; undecodable lines are errors)")
    i.add_argument("--follow-symlinks", action="store_true", default=None,
                   help="folder input: also follow symbolic links that point outside the folder (by "
                        "default they are skipped and listed in OUT-stem.skipped.jsonl)")
    o = e.add_argument_group("output and job")
    o.add_argument("--format", choices=["parquet", "npy"], help="output format (default parquet)")
    o.add_argument("--layout", choices=["list", "columns"],
                   help="embedding as one fixed-size list column (default) or one column per dimension")
    o.add_argument("--chunk-size", type=int, help="items per chunk and per shard (default 256)")
    o.add_argument("--on-error", choices=["raise", "skip"],
                   help="raise: stop at the first bad item (default); skip: record it in "
                        "OUT-stem.errors.jsonl and carry on")
    o.add_argument("--overwrite", action="store_true", default=None,
                   help="delete an existing job in OUT and start over")
    o.add_argument("--config", help="YAML or JSON file with these options (and `params:`)")
    o.add_argument("--quiet", "-q", action="store_true", default=None, help="no progress output")
    o.add_argument("--progress", choices=["auto", "bar", "log", "off"],
                   help="auto: a bar on a terminal, log lines otherwise")
    o.add_argument("--log-every", type=float, help="seconds between progress log lines (default 10)")
    r = e.add_argument_group("distributed (Ray)")
    r.add_argument("--engine", choices=["local", "ray"], help="local (default) or ray")
    r.add_argument("--ray-address", help="Ray cluster address ('auto', 'ray://head:10001'); default: "
                                         "$RAY_ADDRESS, else a local Ray instance")
    r.add_argument("--concurrency", type=int, help="Ray actors (default: GPUs, else CPUs // 2)")
    r.add_argument("--gpus-per-actor", type=float,
                   help="GPUs per actor (default 1 when the cluster has GPUs)")

    la = sub.add_parser("layers", help="list a backbone's layers with their output shapes",
                        description="Print skfeaturize.list_layers(BACKBONE): every valid `layer` value "
                                    "with its index and output shape.")
    la.add_argument("backbone", metavar="BACKBONE",
                    help="image model (resnet50, timm:vit_small_patch16_224) or, with --featurizer text, "
                         "a text model id/folder")
    la.add_argument("--featurizer", "-f", default="image",
                    help="image (default), text, or package.module:Class")
    la.add_argument("--param", "-p", action="append", type=_param, default=[], metavar="KEY=VALUE",
                    help="featurizer parameter (repeatable), e.g. --param weights=null")
    la.add_argument("--format", choices=["table", "csv", "json"], default="table", dest="fmt",
                    help="output format (default: an aligned table)")
    la.add_argument("--stages", action="store_true",
                    help="only the standard list: what an int layer selects, and what layer=-1 means")
    return parser


_EMBED_DEFAULTS = {"featurizer": "image", "format": "parquet", "layout": "list", "chunk_size": 256,
                   "on_error": "raise", "overwrite": False, "quiet": False, "progress": "auto",
                   "log_every": 10.0, "engine": "local", "encoding": "utf-8", "fit_rows": 0,
                   "follow_symlinks": False}
_EMBED_KEYS = ("input", "out", "featurizer", "model", "layer", "pooling", "batch_size", "device", "cache",
               "column", "id_column", "extensions", "root", "encoding", "follow_symlinks", "chunk_size",
               "format", "layout", "on_error", "overwrite", "fit_rows", "engine", "ray_address",
               "concurrency", "gpus_per_actor", "progress", "quiet", "log_every")


def embed_options(args: argparse.Namespace) -> dict:
    """Command line + config file + defaults → keyword arguments of :func:`skfeaturize.jobs.embed`."""
    config = load_config(args.config) if args.config else {}
    params = dict(config.pop("params", None) or {})
    for alias in ("backbone", "vectors"):
        if alias in config:
            config["model"] = config.pop(alias)
    unknown = sorted(set(config) - set(_EMBED_KEYS))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} in config file {args.config!r}; valid: "
                         f"{sorted(_EMBED_KEYS)} and `params`.")
    opts = {}
    for key in _EMBED_KEYS:
        value = getattr(args, key, None)
        if value is None:
            value = config.get(key, _EMBED_DEFAULTS.get(key))
        opts[key] = value
    params.update(dict(args.param))
    opts["params"] = params
    if isinstance(opts["extensions"], str):
        opts["extensions"] = [e.strip() for e in opts["extensions"].split(",") if e.strip()]
    if not opts["out"]:
        raise ValueError("--out is required (a Parquet folder such as embeddings.parquet, or an .npy file "
                         "with --format npy).")
    return opts


def _cmd_embed(args) -> int:
    from .jobs import embed

    opts = embed_options(args)
    embed(opts.pop("input"), opts.pop("out"), **opts)
    return 0


def _cmd_layers(args) -> int:
    from . import list_layers
    from .jobs._embed import featurizer_class, make_featurizer, model_param

    cls = featurizer_class(args.featurizer)
    params = dict(args.param)
    params[model_param(cls)] = args.backbone
    if args.featurizer == "image":
        params.setdefault("weights", None)
    df = list_layers(make_featurizer(cls, params), stages_only=args.stages)
    if args.fmt == "csv":
        df.to_csv(sys.stdout, index=False)
    elif args.fmt == "json":
        print(df.to_json(orient="records"))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200, "display.max_colwidth", 80):
            print(df.to_string(index=False))
    return 0


def main(argv=None) -> int:
    """Entry point of the ``skfeaturize`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .exceptions import SkfeaturizeError

    try:
        return _cmd_embed(args) if args.command == "embed" else _cmd_layers(args)
    except KeyboardInterrupt:
        print("skfeaturize: interrupted; rerun the same command to resume.", file=sys.stderr)
        return 130
    except (SkfeaturizeError, ValueError, OSError, TypeError) as e:
        # one line, no traceback: every error here says what to do (a full disk included)
        print(f"skfeaturize {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
