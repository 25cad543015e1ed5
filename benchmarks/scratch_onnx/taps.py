"""Tap modules used by the scratch scripts (what a featurizer would build): backbone cut at taps,
pooling inside, forward returns a tuple of (batch, d) tensors."""

from __future__ import annotations

from torch import nn

from skfeaturize.pooling import pool_feature_map, pool_sequence, pool_tokens


class FxTaps(nn.Module):
    """torchvision: create_feature_extractor at the nodes, one pooling per (node, pooling)."""

    def __init__(self, model, requests, num_prefix_tokens=0):
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        self.requests = list(requests)
        self.body = create_feature_extractor(model, return_nodes=list(dict.fromkeys(n for n, _ in requests)))
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x):
        feats = self.body(x)
        out = []
        for node, how in self.requests:
            f = feats[node]
            out.append(
                pool_feature_map(f, how) if f.ndim == 4 else pool_tokens(f, how, self.num_prefix_tokens)
            )
        return tuple(out)


class TimmTaps(nn.Module):
    """timm: forward_intermediates at stage indices + forward_head(pre_logits=True)."""

    def __init__(self, model, requests):
        super().__init__()
        self.model = model
        self.requests = list(requests)  # (index or "pre_logits", pooling)
        self.indices = sorted({i for i, _ in requests if i != "pre_logits"})

    def forward(self, x):
        final, inter = self.model.forward_intermediates(x, indices=self.indices or [0])
        by_index = dict(zip(self.indices or [0], inter, strict=False))
        out = []
        for i, how in self.requests:
            if i == "pre_logits":
                out.append(self.model.forward_head(final, pre_logits=True))
            else:
                out.append(pool_feature_map(by_index[i], how))
        return tuple(out)


class HfTaps(nn.Module):
    """transformers encoder: output_hidden_states, masked pooling per (layer, pooling)."""

    def __init__(self, net, requests):
        super().__init__()
        self.net = net
        self.requests = list(requests)

    def forward(self, input_ids, attention_mask, token_type_ids):
        hs = self.net(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
        ).hidden_states
        return tuple(pool_sequence(hs[layer], attention_mask, how) for layer, how in self.requests)
