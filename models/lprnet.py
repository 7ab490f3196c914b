"""LPRNet (Zherzdev & Gruzdev, 2018): a small CNN that reads a 94×24 plate in one pass, no RNN.

Written from the paper's description; the layer indices follow the published state dict
(`lprnet.pth`, 68 classes, 18 time steps) so it loads with strict=True. The paper's
"global context" joins pooled features of four depths before the 1×1 classifier.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

PROVINCES = "京沪津渝冀晋蒙辽吉黑苏浙皖闽赣鲁豫鄂湘粤桂琼川贵云藏陕甘青宁新"
CHARS: tuple[str, ...] = (
    tuple(PROVINCES) + tuple("0123456789") + tuple("ABCDEFGHJKLMNPQRSTUVWXYZ") + ("I", "O", "-")
)
BLANK = len(CHARS) - 1
INPUT_HW = (24, 94)


class SmallBasicBlock(nn.Module):
    """The paper's bottleneck: 1×1 squeeze, 3×1 and 1×3 convolutions, 1×1 expand."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        mid = c_out // 4
        self.block = nn.Sequential(
            nn.Conv2d(c_in, mid, 1),
            nn.ReLU(),
            nn.Conv2d(mid, mid, (3, 1), padding=(1, 0)),
            nn.ReLU(),
            nn.Conv2d(mid, mid, (1, 3), padding=(0, 1)),
            nn.ReLU(),
            nn.Conv2d(mid, c_out, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class ChannelStridePool(nn.Module):
    """3×3 max pool that also keeps every `channel_stride`-th channel (the paper's 3-D max pooling)."""

    def __init__(self, channel_stride: int, stride: tuple[int, int]):
        super().__init__()
        self.channel_stride = channel_stride
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x[:, :: self.channel_stride], 3, self.stride)


class LPRNet(nn.Module):
    """Backbone + global context; forward returns (N, classes, 18) logits."""

    # backbone indices whose outputs feed the global context, and how each is pooled to 4×18
    CONTEXT_TAPS = (2, 6, 13, 22)

    def __init__(self, class_num: int = len(CHARS)):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 64, 3),  # 0
            nn.BatchNorm2d(64),
            nn.ReLU(),  # 2
            ChannelStridePool(1, (1, 1)),
            SmallBasicBlock(64, 128),  # 4
            nn.BatchNorm2d(128),
            nn.ReLU(),  # 6
            ChannelStridePool(2, (1, 2)),
            SmallBasicBlock(64, 256),  # 8
            nn.BatchNorm2d(256),
            nn.ReLU(),
            SmallBasicBlock(256, 256),  # 11
            nn.BatchNorm2d(256),
            nn.ReLU(),  # 13
            ChannelStridePool(4, (1, 2)),
            nn.Dropout(0.5),
            nn.Conv2d(64, 256, (1, 4)),  # 16
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Conv2d(256, class_num, (13, 1)),  # 20
            nn.BatchNorm2d(class_num),
            nn.ReLU(),  # 22
        )
        self.pools = nn.ModuleList(
            [nn.AvgPool2d(5, 5), nn.AvgPool2d(5, 5), nn.AvgPool2d((4, 10), (4, 2)), nn.Identity()]
        )
        self.container = nn.Sequential(nn.Conv2d(64 + 128 + 256 + class_num, class_num, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = []
        for i, layer in enumerate(self.backbone):
            x = layer(x)
            if i in self.CONTEXT_TAPS:
                taps.append(x)
        context = []
        for pool, feat in zip(self.pools, taps, strict=True):
            feat = pool(feat)
            # scale each map by its own mean power, per sample, so a batch reads as its plates would alone
            power = feat.pow(2).mean(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
            context.append(feat / power)
        return self.container(torch.cat(context, dim=1)).mean(dim=2)


def preprocess(crops: list[np.ndarray]) -> torch.Tensor:
    """BGR uint8 crops of any size -> (N, 3, 24, 94) float, (x − 127.5) / 128."""
    h, w = INPUT_HW
    batch = np.stack([resize_to(c, (w, h)) for c in crops]).astype(np.float32)
    batch = (batch - 127.5) * 0.0078125
    return torch.from_numpy(batch.transpose(0, 3, 1, 2).copy())


def resize_to(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (w, h): area averaging when shrinking (no aliasing), linear when enlarging."""
    return cv2.resize(img, size, interpolation=cv2.INTER_LINEAR if img.shape[1] < size[0] else cv2.INTER_AREA)


def ctc_greedy(logits: np.ndarray, blank: int = BLANK) -> list[tuple[list[int], list[float]]]:
    """(N, classes, T) logits -> per sample the label ids and their softmax confidences.

    Greedy CTC: best class per step, collapse runs, drop blanks; a character's
    confidence is the highest probability over the run it came from.
    """
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    best = probs.argmax(axis=1)  # (N, T)
    best_p = probs.max(axis=1)
    out = []
    for ids, ps in zip(best, best_p, strict=True):
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        run_p = np.maximum.reduceat(ps, starts)
        keep = ids[starts] != blank
        out.append((ids[starts][keep].tolist(), run_p[keep].tolist()))
    return out


class LPRNetReader:
    """Loads the weights once and hands the network to OpenVINO; `read` runs crops in batches of up to CHUNK.

    The published weights are a PyTorch state dict; the same network compiled by OpenVINO in float32 gives the
    same logits (within 1e-4) about 10× faster than PyTorch on this CPU (5.6 vs 60 ms a plate), and the plate
    stage runs it on every plate (models/plates.py: PlateReader). Float32 is asked for: OpenVINO's default on
    CPUs with bf16 moves the logits by up to 0.7, enough to change a character.
    """

    CHUNK = 32  # per-crop cost is flat up to here and grows past it (cache-bound on 2 cores)

    def __init__(self, weights: Path):
        import openvino as ov

        from models.runtime import OpenVinoModel

        self.net = LPRNet()
        state = torch.load(weights, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)
        self.net.eval()
        example = preprocess([np.zeros((24, 94, 3), np.uint8)])
        with warnings.catch_warnings():  # the converter traces with torch.jit, which torch 2.13 calls deprecated
            warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit\.trace")
            converted = ov.convert_model(self.net, example_input=example)
        converted.outputs[0].get_tensor().set_names({"logits"})  # the converter leaves it unnamed
        self.model = OpenVinoModel(converted, precision="f32")

    def read(self, crops: list[np.ndarray]) -> list[tuple[str, list[float]]]:
        """Text and per-character confidences for each BGR crop."""
        out: list[tuple[str, list[float]]] = []
        for start in range(0, len(crops), self.CHUNK):
            logits = self.model.infer(preprocess(crops[start : start + self.CHUNK]).numpy())["logits"]
            out.extend(("".join(CHARS[i] for i in ids), ps) for ids, ps in ctc_greedy(logits))
        return out
