"""TorchScript export of a trained detector (Metavision's ``detection.jitting``).

:class:`SSD` wraps a :class:`SingleStageDetector` into one scriptable module that takes the input tensor
``(T, B, C, H, W)`` and returns, for every time bin and stream, the filtered boxes ``(n, 6)``
``[x1, y1, w, h, score, class_id]`` (input pixels, class ids 1..C, sorted by score). Its recurrent memory persists
across calls as in training; ``reset_all()`` zeroes it (call it before a new recording), ``reset(mask)`` zeroes the
streams whose mask is 0.

The training modules hold their recurrent state in Python attributes, which TorchScript cannot compile, so the
export rebuilds the network from scriptable twins sharing the same weights: :class:`ScriptConvRNN` for
:class:`~evframe.models.temporal.ConvRNN` (same gate equations) and :class:`ScriptSequenceWise` for
:class:`~evframe.models.temporal.SequenceWise`. The scripted model needs ``import torchvision`` before
``torch.jit.load`` (its NMS is torchvision's operator).
"""

import copy
import json
import warnings
from pathlib import Path
from typing import Any, Optional

import torch
import torchvision  # noqa: F401 - registers torchvision::nms used by the scripted decoder
from omegaconf import DictConfig, OmegaConf
from torch import nn

from evframe.models.temporal import ConvRNN, SequenceWise
from evframe.tasks.detection.anchors import decode_boxes
from evframe.tasks.detection.box_ops import MAX_LOG_SIZE_DELTA
from evframe.tasks.detection.feature_extractors import RecurrentPyramid

MODEL_NAME = "model.ptjit"
INFO_NAME = "info_ssd_jit.json"
BOX_FORMAT = "x1,y1,w,h,score,class_id"


class ScriptSequenceWise(nn.Module):
    """Applies a 2-D module to every time step of ``(T, B, C, H, W)`` (scriptable :class:`SequenceWise`)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[0], x.shape[1]
        y = self.module(x.reshape(t * b, x.shape[2], x.shape[3], x.shape[4]))
        return y.reshape(t, b, y.shape[1], y.shape[2], y.shape[3])


class ScriptConvRNN(nn.Module):
    """Scriptable twin of a :class:`ConvRNN` (LSTM or GRU cell), sharing its weights.

    The state is kept in buffers (``prev_h``, ``prev_c``), zeros when absent or when the batch or spatial size
    changes, and detached after every call (inference: the graph never grows across calls).
    """

    def __init__(self, rnn: ConvRNN) -> None:
        super().__init__()
        self.conv_x2h = rnn.conv_x2h.module
        self.conv_h2h = rnn.timepool.conv_h2h
        self.is_lstm = rnn.cell == "lstm"
        self.hidden = rnn.out_channels
        self.register_buffer("prev_h", torch.zeros(0), persistent=False)
        self.register_buffer("prev_c", torch.zeros(0), persistent=False)

    def _ensure_state(self, like: torch.Tensor) -> None:
        shape = [like.shape[0], self.hidden, like.shape[2], like.shape[3]]
        if list(self.prev_h.shape) != shape or self.prev_h.device != like.device:
            self.prev_h = torch.zeros(shape, dtype=like.dtype, device=like.device)
            self.prev_c = torch.zeros(shape, dtype=like.dtype, device=like.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, b = x.shape[0], x.shape[1]
        gates_x = self.conv_x2h(x.reshape(t * b, x.shape[2], x.shape[3], x.shape[4]))
        gates_x = gates_x.reshape(t, b, gates_x.shape[1], gates_x.shape[2], gates_x.shape[3])
        self._ensure_state(gates_x[0])
        h, c = self.prev_h, self.prev_c
        outs: list[torch.Tensor] = []
        for step in range(t):
            if self.is_lstm:
                i, f, o, g = (self.conv_h2h(h) + gates_x[step]).chunk(4, 1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                xr, xz, xn = gates_x[step].chunk(3, 1)
                hr, hz, hn = self.conv_h2h(h).chunk(3, 1)
                r = torch.sigmoid(xr + hr)
                z = torch.sigmoid(xz + hz)
                h = (1 - z) * torch.tanh(xn + r * hn) + z * h
            outs.append(h)
        self.prev_h = h.detach()
        self.prev_c = c.detach()
        return torch.stack(outs, 0)

    @torch.jit.export
    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the state of the streams whose ``mask_keep_memory`` (B,) is 0."""
        if self.prev_h.numel() > 0 and self.prev_h.shape[0] == mask_keep_memory.shape[0]:
            mask = mask_keep_memory.to(self.prev_h.dtype).to(self.prev_h.device).view(-1, 1, 1, 1)
            self.prev_h = self.prev_h * mask
            self.prev_c = self.prev_c * mask

    @torch.jit.export
    def reset_all(self) -> None:
        """Zeroes the whole state (kept at its size, so it can be inspected)."""
        self.prev_h = torch.zeros_like(self.prev_h)
        self.prev_c = torch.zeros_like(self.prev_c)


def _scriptable(module: nn.Module) -> nn.Module:
    """``module`` with every SequenceWise / ConvRNN inside replaced by its scriptable twin (weights shared)."""
    if isinstance(module, ConvRNN):
        return ScriptConvRNN(module)
    if isinstance(module, SequenceWise):
        return ScriptSequenceWise(_scriptable(module.module))
    for name, child in list(module.named_children()):
        setattr(module, name, _scriptable(child))
    return module


class ScriptPyramid(nn.Module):
    """Scriptable twin of a :class:`RecurrentPyramid` feature extractor."""

    def __init__(self, pyramid: RecurrentPyramid) -> None:
        super().__init__()
        self.stem = _scriptable(pyramid.stem)
        self.levels = nn.ModuleList(ScriptConvRNN(level) for level in pyramid.levels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.stem(x)
        outs: list[torch.Tensor] = []
        for level in self.levels:
            y = level(y)
            outs.append(y)
        return outs

    @torch.jit.export
    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        for level in self.levels:
            level.reset(mask_keep_memory)

    @torch.jit.export
    def reset_all(self) -> None:
        for level in self.levels:
            level.reset_all()


class BoxDecoder(nn.Module):
    """Scriptable decoding of the head's predictions: SSD deltas to boxes clipped to the input, softmax scores,
    score threshold, top-k and batched NMS over images and classes (see :func:`decode_boxes`)."""

    def __init__(self) -> None:
        super().__init__()
        self.max_log_size_delta = float(MAX_LOG_SIZE_DELTA)

    def forward(self, anchors: torch.Tensor, loc_preds: torch.Tensor, cls_preds: torch.Tensor, varx: float,
                vary: float, score_thresh: float, batch_size: int, nms_thresh: float = 0.5, topk: int = 100,
                height: float = 1e9, width: float = 1e9) -> list[list[torch.Tensor]]:
        """anchors (A, 4) cxcywh, loc_preds (N, A, 4), cls_preds (N, A, C + 1) logits, N = T * batch_size ->
        T lists of ``batch_size`` tensors (n, 6) ``[x1, y1, w, h, score, class_id]``."""
        center = loc_preds[..., :2] * varx * anchors[None, :, 2:] + anchors[None, :, :2]
        size = torch.exp((loc_preds[..., 2:] * vary).clamp(max=self.max_log_size_delta)) * anchors[None, :, 2:]
        x1 = (center[..., 0] - size[..., 0] / 2).clamp(0.0, width)
        y1 = (center[..., 1] - size[..., 1] / 2).clamp(0.0, height)
        x2 = (center[..., 0] + size[..., 0] / 2).clamp(0.0, width)
        y2 = (center[..., 1] + size[..., 1] / 2).clamp(0.0, height)
        boxes = torch.stack([x1, y1, x2, y2], dim=-1)
        scores = cls_preds.softmax(dim=-1)[..., 1:]
        flat = decode_boxes(boxes, scores, score_thresh, nms_thresh, topk, False)
        out: list[list[torch.Tensor]] = []
        for start in range(0, len(flat), batch_size):
            row: list[torch.Tensor] = []
            for rows in flat[start:start + batch_size]:
                row.append(torch.cat([rows[:, :2], rows[:, 2:4] - rows[:, :2], rows[:, 4:]], dim=1))
            out.append(row)
        return out


class SSD(nn.Module):
    """Scriptable single-shot detector: input ``(T, B, C, H, W)`` -> nested list ``[t][b]`` of filtered boxes
    ``(n, 6)`` ``[x1, y1, w, h, score, class_id]`` (see the module docstring).

    Args:
        net: the trained :class:`SingleStageDetector` (left untouched: the SSD holds copies of its weights).
        nms_thresh: IoU threshold of the NMS; max_boxes_per_input: boxes kept per frame.
    """

    def __init__(self, net: Any, nms_thresh: float = 0.5, max_boxes_per_input: int = 100) -> None:
        super().__init__()
        if not isinstance(net.feature_extractor, RecurrentPyramid):
            raise TypeError(f"SSD export supports RecurrentPyramid feature extractors, got "
                            f"{type(net.feature_extractor).__name__}")
        net = copy.deepcopy(net).eval()
        self.feature_extractor = ScriptPyramid(net.feature_extractor)
        self.rpn = net.rpn
        self.anchor_generator = net.anchor_generator
        self.box_decoder = BoxDecoder()
        self.varx = float(net.anchor_generator.variances[0])
        self.vary = float(net.anchor_generator.variances[1])
        self.nms_thresh = float(nms_thresh)
        self.max_boxes_per_input = int(max_boxes_per_input)
        self.in_channels = int(net.in_channels)
        self.eval()

    def forward(self, x: torch.Tensor, score_thresh: float = 0.4) -> list[list[torch.Tensor]]:
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise ValueError("SSD: expected an input of shape (T, B, C, H, W) with C = in_channels")
        t, b = x.shape[0], x.shape[1]
        features: list[torch.Tensor] = []
        for f in self.feature_extractor(x):
            features.append(f.reshape(t * b, f.shape[2], f.shape[3], f.shape[4]))
        preds = self.rpn(features)
        anchors = self.anchor_generator(features, x)
        return self.box_decoder(anchors, preds[0], preds[1], self.varx, self.vary, score_thresh, b,
                                self.nms_thresh, self.max_boxes_per_input, float(x.shape[-2]), float(x.shape[-1]))

    @torch.jit.export
    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the memory of the streams whose ``mask_keep_memory`` (B,) is 0."""
        self.feature_extractor.reset(mask_keep_memory)

    @torch.jit.export
    def reset_all(self) -> None:
        """Zeroes the whole memory (before a new recording)."""
        self.feature_extractor.reset_all()


def export_ssd(ssd: SSD, params: dict[str, Any], out_directory: str | Path, nms_thresh: float,
               score_thresh: float) -> Path:
    """Scripts ``ssd`` and writes ``<out_directory>/model.ptjit`` and ``info_ssd_jit.json`` (``params`` plus the
    thresholds and box format). Returns the model path."""
    out = Path(out_directory)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch deprecates TorchScript for torch.export, but TorchScript is what C++ applications load
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        scripted = torch.jit.script(ssd)
    path = out / MODEL_NAME
    torch.jit.save(scripted, str(path))
    info = dict(params, nms_thresh=float(nms_thresh), score_thresh=float(score_thresh), box_format=BOX_FORMAT,
                model=MODEL_NAME, requires="import torchvision before torch.jit.load (the NMS is its operator)")
    (out / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return path


def export_lightning_model(lightning_model: Any, out_directory: str | Path, nms_thresh: float = 0.5,
                           score_thresh: float = 0.4, preprocess: Any = None,
                           max_boxes_per_input: int = 100) -> Path:
    """Exports a :class:`DetectionLightningModule` (mode=export): the scripted SSD and the JSON of its parameters
    (classes, input size and channels, preprocess name and options, delta_t, num_tbins, downsample, thresholds).

    Returns:
        the path of the scripted model.
    """
    p: dict[str, Any] = {}
    if preprocess is not None:
        p = OmegaConf.to_container(preprocess, resolve=True) if isinstance(preprocess, DictConfig) else dict(preprocess)
    net = lightning_model.model
    ssd = SSD(net, nms_thresh, max_boxes_per_input)
    params = {
        "label_map": ["background", *lightning_model.classes],
        "num_classes": len(lightning_model.classes),
        "in_channels": int(net.in_channels),
        "height": _int_or_none(p.get("height")),
        "width": _int_or_none(p.get("width")),
        "preprocess": p.get("name"),
        "preprocess_kwargs": p.get("kwargs") or {},
        "delta_t": _int_or_none(p.get("delta_t")),
        "num_tbins": _int_or_none(p.get("num_tbins")),
        "downsample": int(p.get("downsample") or 0),
        "max_boxes_per_input": int(max_boxes_per_input),
        "input_shape": "(T, B, C, H, W)",
    }
    return export_ssd(ssd, params, out_directory, nms_thresh, score_thresh)


def _int_or_none(value: Optional[Any]) -> Optional[int]:  # noqa: UP045 - module kept free of postponed annotations
    return None if value is None else int(value)


__all__ = ["BOX_FORMAT", "BoxDecoder", "INFO_NAME", "MODEL_NAME", "SSD", "ScriptConvRNN", "ScriptPyramid",
           "ScriptSequenceWise", "export_lightning_model", "export_ssd"]
