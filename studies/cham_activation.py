"""CHAM's attenuation at initialisation, for each reading of its activation.

    python studies/cham_activation.py                      # ResNet-18 and -50, 128x64 (CPU budget)
    python studies/cham_activation.py --height 256 --width 128

For a freshly built Deep Miner (from scratch, ``attention: sam+cham``, train mode so BatchNorm uses
batch statistics) on a batch of N(0, 1) images, it prints, for CHAM after B2 and after B3 (B3's is
block 4's input):

- ``out/in``: std of CHAM's output over std of its input (SAM is the identity at init, gamma = 0);
- ``C x out/in``: the same times the channel count C (1 means the output is Y / C);
- for CHAM after B3, the mean per-channel variance at the input of block 4's first BatchNorms
  (``bn1`` of its first block, and of its downsample projection), in units of BN's eps (1e-5), and
  the same with no attention (``none``) for reference. A variance of a few eps means BN divides by
  sqrt(var + eps) with eps a large part of it: the normalised activations come out smaller than 1,
  by the factor ``BN gain`` = sqrt(var / (var + eps)) printed beside it;
- ``grad B1-B3``: the gradient norm that reaches G's blocks B1-B3 from the mean square of the global
  feature, relative to the network without attention (how much of the backbone's training signal
  passes back through the two CHAMs).

Reading (2026-12-01, 128x64, batch 16): the softmax over channels divides Y by about C (1.10 / C
after ResNet-18's B3, 1.32 / C after ResNet-50's), so block 4's first BNs see 1.6 eps (ResNet-18
bn1) and 0.34 eps (ResNet-50 downsample) and pass on 0.78x and 0.50x of a normalised signal; the
sigmoid keeps half the std (0.51 / 0.53) and every BN gain at 1.00. The gradient reaching B1-B3 is
not attenuated in either reading (BN rescales it back): 0.96x / 1.39x (softmax), 1.01x / 1.04x
(sigmoid). With this and a smoke-budget run (sigmoid 38.3 / 35.1 rank-1 / mAP, softmax 26.4 / 27.0,
one seed), the default is the sigmoid (reidlib/models/attention.py).
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import Tensor, nn

from reidlib.models import build_model
from reidlib.models.attention import CHAM_ACTIVATIONS, ChannelAttention


def _capture(module: nn.Module, store: dict[str, Tensor], key: str, *, output: bool) -> None:
    def hook(_m, args, out):
        store[key] = (out if output else args[0]).detach()

    module.register_forward_hook(hook)


def measure(backbone: str, attention: str, activation: str, height: int, width: int, batch: int) -> dict:
    torch.manual_seed(0)
    options = {"attention": attention, "cham_activation": activation}
    model = build_model("deep_miner", 10, backbone=backbone, **options).train()
    seen: dict[str, Tensor] = {}
    for i in (2, 3):
        for m in model.stages[i - 1][1].modules():
            if isinstance(m, ChannelAttention):
                _capture(m, seen, f"cham_in_b{i}", output=False)
                _capture(m, seen, f"cham_out_b{i}", output=True)
    first = model.stages[3][0][0]  # block 4's first residual block (G's own)
    _capture(first.bn1, seen, "bn1", output=False)
    _capture(first.downsample[1], seen, "down", output=False)
    torch.manual_seed(1)
    model(torch.randn(batch, 3, height, width))["global"].feat.pow(2).mean().backward()
    lower = [p for s in model.stages[:3] for p in s[0].parameters()]  # B1-B3 themselves, not ATT
    eps = first.bn1.eps
    row = {
        "grad": float(torch.sqrt(sum(p.grad.pow(2).sum() for p in lower))),
        "C_b2": model.stages[1][0][-1].conv1.in_channels,
        "C_b3": first.conv1.in_channels,
        "bn1_var_eps": float(seen["bn1"].var(dim=(0, 2, 3)).mean()) / eps,
        "down_var_eps": float(seen["down"].var(dim=(0, 2, 3)).mean()) / eps,
    }
    for i in (2, 3):
        if f"cham_in_b{i}" in seen:
            row[f"ratio_b{i}"] = float(seen[f"cham_out_b{i}"].std() / seen[f"cham_in_b{i}"].std())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    args = parser.parse_args()
    print(f"input {args.height}x{args.width}, batch {args.batch} of N(0, 1) images, train-mode BN, seed 0")
    header = (
        f"{'backbone':9} {'CHAM':17} {'out/in B2':>10} {'C x':>6} {'out/in B3':>10} {'C x':>6} "
        f"{'B4 bn1 var/eps':>15} {'BN gain':>8} {'B4 down var/eps':>16} {'BN gain':>8} {'grad B1-B3':>11}"
    )
    print(header)
    for backbone in args.backbones:
        rows = {
            a: measure(
                backbone,
                "none" if a == "none" else "sam+cham",
                "sigmoid" if a == "none" else a,
                args.height,
                args.width,
                args.batch,
            )
            for a in ("none", *CHAM_ACTIVATIONS)
        }
        for activation in (*CHAM_ACTIVATIONS, "none"):
            r = rows[activation]
            if activation == "none":
                cells = f"{'-':>10} {'-':>6} {'-':>10} {'-':>6}"
            else:
                cells = (
                    f"{r['ratio_b2']:10.5f} {r['C_b2'] * r['ratio_b2']:6.2f} "
                    f"{r['ratio_b3']:10.5f} {r['C_b3'] * r['ratio_b3']:6.2f}"
                )
            name = "none (no ATT)" if activation == "none" else activation
            gains = [math.sqrt(v / (v + 1.0)) for v in (r["bn1_var_eps"], r["down_var_eps"])]
            print(
                f"{backbone:9} {name:17} {cells} {r['bn1_var_eps']:15.3g} {gains[0]:8.2f} "
                f"{r['down_var_eps']:16.3g} {gains[1]:8.2f} {r['grad'] / rows['none']['grad']:11.3g}"
            )


if __name__ == "__main__":
    main()
