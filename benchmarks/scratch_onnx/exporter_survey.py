"""Which torch.onnx exporter (dynamo / torchscript) exports which tap module, and how exact is ORT."""

from __future__ import annotations

import io
import sys
import time
import traceback
import warnings

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from taps import FxTaps, HfTaps, TimmTaps  # noqa: E402


def cases():
    import timm
    import torchvision.models as tvm
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    x = torch.randn(2, 3, 224, 224)
    yield "resnet18 layer3 avg+gem", FxTaps(tvm.resnet18(), [("layer3", "avg"), ("layer3", "gem")]), (x,)
    yield "mobilenet_v3_small features.6 gem", FxTaps(tvm.mobilenet_v3_small(), [("features.6", "gem")]), (x,)
    yield (
        "efficientnet_b0 features.5 avg+max",
        FxTaps(tvm.efficientnet_b0(), [("features.5", "avg"), ("features.5", "max")]),
        (x,),
    )
    vit = tvm.vit_b_16()
    yield (
        "vit_b_16 layer5 cls+mean",
        FxTaps(
            vit,
            [("encoder.layers.encoder_layer_5", "cls"), ("encoder.layers.encoder_layer_5", "mean")],
            num_prefix_tokens=1,
        ),
        (x,),
    )
    lite = timm.create_model("tf_efficientnet_lite0")
    yield (
        "timm tf_efficientnet_lite0 stage2 avg + pre_logits",
        TimmTaps(lite, [(2, "avg"), ("pre_logits", None)]),
        (x,),
    )
    net = BertModel(
        BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        add_pooling_layer=False,
    )
    ids = torch.randint(3, 100, (2, 11))
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 7:] = 0
    yield (
        "tiny BERT layers 0/1/2 mean/cls/max/last",
        HfTaps(net, [(0, "mean"), (1, "cls"), (2, "max"), (2, "last")]),
        (ids, mask, torch.zeros_like(ids)),
    )


def export(m, args, dynamo):
    names = ["x"] if len(args) == 1 else ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: ({0: "batch"} if len(args) == 1 else {0: "batch", 1: "seq"}) for n in names}
    with torch.no_grad(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if dynamo:
            prog = torch.onnx.export(
                m, args, dynamo=True, input_names=names, dynamic_axes=axes, external_data=False, optimize=True
            )
            data = prog.model_proto.SerializeToString()
        else:
            buf = io.BytesIO()
            torch.onnx.export(
                m, args, buf, dynamo=False, input_names=names, dynamic_axes=axes, opset_version=17
            )
            data = buf.getvalue()
    tracer = [str(w.message)[:100] for w in caught if "Tracer" in type(w.message).__name__]
    return data, names, tracer


def probe(args):
    # a batch and a sequence length different from the export example
    if len(args) == 1:
        return (torch.randn(3, 3, 224, 224),)
    ids = torch.randint(3, 100, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[0, 4:] = 0
    return ids, mask, torch.zeros_like(ids)


def main():
    torch.set_num_threads(2)
    rows = []
    for name, m, args in cases():
        m.eval()
        p = probe(args)
        with torch.no_grad():
            ref = [t.numpy() for t in m(*p)]
        for dynamo in (True, False):
            t0 = time.perf_counter()
            try:
                data, names, tracer = export(m, args, dynamo)
                t_exp = time.perf_counter() - t0
                sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
                feed = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), p, strict=False)}
                got = sess.run(None, feed)
                diff = max(
                    float(np.abs(a - b).max()) / max(1.0, float(np.abs(a).max()))
                for a, b in zip(ref, got, strict=False)
                )
                status = (
                    f"ok rel-diff {diff:.2e} export {t_exp:.1f}s {len(data) / 1e6:.1f}MB "
                    f"inputs {[i.name for i in sess.get_inputs()]} tracerwarn {len(tracer)}"
                )
                if tracer:
                    status += " " + repr(tracer[:2])
            except Exception as e:  # noqa: BLE001
                status = f"FAIL {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
                traceback.print_exc(limit=2, file=open("/tmp/onnx_survey_tb.txt", "a"))
            rows.append((name, "dynamo" if dynamo else "torchscript", status))
            print(f"{name:55s} {'dynamo' if dynamo else 'torchscript':12s} {status}", flush=True)


if __name__ == "__main__":
    main()
