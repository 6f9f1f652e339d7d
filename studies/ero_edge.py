"""Where Deep Miner's ErO erases, and why the left edge.

    python studies/ero_edge.py                                   # randomly initialised network
    python studies/ero_edge.py --checkpoint <run>/last.pt        # a trained Deep Miner

On the real run, ErO after block 3 erased the image's left edge in 98 % of cells. This script computes
ErO's keep-mask (eq. 1: channel mean of Y_i, min-max per image, erase > tau) on G's maps Y_2 and Y_3 of
a Deep Miner in train mode (BatchNorm on batch statistics, as in training) for a batch of synthetic
images, and prints, per variant, the share of the erased cells that fall in each column of the map
(left to right) and in the first and last row:

- ``as built``: torchvision's ResNet, zero padding, even input width (64);
- ``mirrored input``: the same images flipped left-right. If the erased column follows the content
  it moves to the right edge; if it stays on the left, the network, not the image, puts it there;
- ``reflect`` / ``replicate`` padding: every padded convolution pads by reflection / replication
  instead of zeros (the weights are unchanged);
- ``odd width 65``: 129x65 input, so that every stride-2 layer sees an odd width. With an even width,
  a stride-2 convolution's first window covers the zero padding on the left but its last window ends
  inside the image on the right (3x3, pad 1: windows start at -1, 1, ..., W-3), so the two edges are
  treated differently; with an odd width both edge windows reach the padding;
- ``no attention``: ``attention: none``, to see whether SAM/CHAM play a part.

- ``energy score``: ErO's min-max threshold on sum_c Y^2 (SEN's F) instead of the channel mean, to
  see whether the mean itself is what picks the edge.

``after mirroring`` follows each erased cell of an image into the mask of its mirrored copy: the share
still erased at the same place (``stays``, the network's doing) and at the mirrored place (``moves``,
the content's doing). ``--data`` may point at a Market-1501 folder (its bounding_box_train images).

Reading (2026-12-01, ErO after block 3, 4-column maps; a Deep Miner trained 4 epochs on the smoke
budget, softmax CHAM, shown 64 Market-1501 training images): the erased cells sit in ONE edge column,
94 % of them in the right one; mirroring the input leaves them there (65 % stay, 7 % move); reflect or
replicate padding spreads them over the four columns (29/33/21/17 % and 38/29/21/12 %); an odd
width (65: every stride-2 layer sees an odd width, so both edges are padded alike) splits them between
the two edges (31 % / 69 %, none inside). The randomly initialised network erases the centre (edge
columns 1.5 % / 16.5 %), so the edge is learned. Hence: an artefact of zero padding, which the trained
network turns into a large channel mean at a border; the stride-2 layers on even widths treat the two
borders differently, so one border wins, and which one is the trained network's (sum_c Y^2 picks the
other edge of the same network: 74 % left), not the image's. On the real run it was the left edge.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn

from reidlib.data.datasets import load_dataset, make_synthetic
from reidlib.data.datasets.base import SPLIT_FOLDERS
from reidlib.data.images import load_test_batch
from reidlib.erasing import minmax_threshold_mask
from reidlib.models import build_model
from reidlib.training.engine import load_network


def synthetic_images(count: int, height: int, width: int, root: Path) -> Tensor:
    if not (root / SPLIT_FOLDERS["train"]).is_dir():
        make_synthetic(root, num_train_ids=16, num_test_ids=4, seed=0)
    return load_test_batch(load_dataset("folder", root).train[:count], height, width)


def set_padding(model: nn.Module, mode: str) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d) and any(p > 0 for p in m.padding):
            m.padding_mode = mode


def masks(model: nn.Module, x: Tensor, tau: float, energy: bool = False) -> dict[str, Tensor]:
    torch.manual_seed(0)
    with torch.no_grad():
        ys = model.train().feature_maps(x)
    out = {}
    for i in (2, 3):
        y = ys[f"b{i}"]
        score = y.square().sum(dim=1, keepdim=True) if energy else y  # the mask takes the channel mean
        out[f"b{i}"] = 1.0 - minmax_threshold_mask(score, tau)  # 1 = erased
    return out


def profile(erased: Tensor) -> str:
    cols = erased.sum(dim=(0, 1, 2))
    share = 100 * cols / cols.sum().clamp_min(1)
    rows = erased.sum(dim=(0, 1, 3))
    top, bottom = (100 * rows[[0, -1]] / rows.sum().clamp_min(1)).tolist()
    cells = " ".join(f"{v:5.1f}" for v in share.tolist())
    return f"columns [{cells}]  top row {top:5.1f}  bottom row {bottom:5.1f}  ({int(erased.sum())} cells)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="a Deep Miner last.pt (default: random init)"
    )
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--data", type=Path, default=Path("/tmp/reidlib_ero_edge/synthetic"))
    args = parser.parse_args()

    def network(**options) -> nn.Module:
        if args.checkpoint is not None:
            model, recipe = load_network(args.checkpoint)
            if options.get("attention") == "none":
                return None  # a trained network cannot drop its attention
            return model
        torch.manual_seed(0)
        return build_model("deep_miner", 10, backbone="resnet18", **options)

    tau = 0.8
    x = synthetic_images(args.images, 128, 64, args.data)
    x_odd = synthetic_images(args.images, 129, 65, args.data)
    source = f"checkpoint {args.checkpoint}" if args.checkpoint else "random init (ResNet-18, seed 0)"
    print(f"Deep Miner {source}; {len(x)} synthetic images; tau {tau}; share of erased cells in %")
    variants = []
    base = network()
    variants.append(("as built (zero padding, 128x64)", masks(base, x, tau)))
    mirrored = masks(base, torch.flip(x, dims=[3]), tau)
    variants.append(("mirrored input", mirrored))
    for mode in ("reflect", "replicate"):
        model = network()
        set_padding(model, mode)
        variants.append((f"{mode} padding", masks(model, x, tau)))
    variants.append(("odd width (129x65)", masks(network(), x_odd, tau)))
    plain = network(attention="none")
    if plain is not None:
        variants.append(("no attention", masks(plain, x, tau)))
    variants.append(("energy score sum_c Y^2", masks(network(), x, tau, energy=True)))
    for block in ("b2", "b3"):
        print(f"\nErO after block {block[1]} (Y_{block[1]}), columns left -> right:")
        for name, m in variants:
            print(f"  {name:32} {profile(m[block])}")
        erased, back = variants[0][1][block], mirrored[block]
        stays = float((erased * back).sum() / erased.sum())
        moves = float((erased * torch.flip(back, dims=[3])).sum() / erased.sum())
        print(f"  after mirroring: {100 * stays:.1f} % of erased cells stay, {100 * moves:.1f} % move")


if __name__ == "__main__":
    main()
