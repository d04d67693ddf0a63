"""Flow visualisation: HSV-coloured arrows over a gray image, dense colour coding, batch grids.

Colour code everywhere: hue = direction of the flow (OpenCV hue ``angle / 2`` in ``[0, 180)``, angle measured from
+x towards +y, i.e. clockwise on screen), full saturation; dense maps use value = magnitude.
Images are RGB ``uint8`` ``(H, W, 3)``; flows are ``(2, H, W)`` (x then y), numpy or torch, in pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_flow(flow: np.ndarray, where: str) -> None:
    if flow.ndim != 3 or flow.shape[0] != 2:
        raise ValueError(f"{where}: flow must have shape (2, H, W), got {flow.shape}")


def convert_to_gray(img: np.ndarray) -> np.ndarray:
    """Converts an RGB ``uint8`` image ``(H, W, 3)`` (or a gray ``(H, W)`` / ``(H, W, 1)``) to a 3-channel gray
    ``uint8`` image ``(H, W, 3)``, so coloured arrows can be drawn on it."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"convert_to_gray: expected a uint8 image, got dtype {img.dtype}")
    if img.ndim == 3 and img.shape[2] == 3:
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 1):
        gray = img.reshape(img.shape[:2])
    else:
        raise ValueError(f"convert_to_gray: expected (H, W), (H, W, 1) or (H, W, 3), got {img.shape}")
    return np.repeat(gray[:, :, None], 3, axis=2)


def _opencv_hue(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """OpenCV 8-bit hue ``[0, 180)`` of the direction: degrees from +x towards +y, halved, wrapping 360 -> 0."""
    degrees = np.degrees(np.arctan2(fy, fx)) % 360.0
    return (np.round(degrees / 2.0) % 180).astype(np.uint8)


def direction_colors(fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
    """RGB ``uint8`` colours ``(N, 3)`` coding the direction of the vectors ``(fx, fy)`` (full saturation/value)."""
    fx, fy = np.asarray(fx).ravel(), np.asarray(fy).ravel()
    if fx.size == 0:
        return np.zeros((0, 3), dtype=np.uint8)
    hsv = np.zeros((1, fx.size, 3), dtype=np.uint8)
    hsv[0, :, 0] = _opencv_hue(fx, fy)
    hsv[0, :, 1:] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]


def draw_arrows(
    img: np.ndarray,
    flow: np.ndarray | torch.Tensor,
    step: int = 16,
    threshold_px: float = 1,
    convert_img_to_gray: bool = True,
    mask: np.ndarray | torch.Tensor | None = None,
    thickness: int = 1,
) -> np.ndarray:
    """Draws HSV-coloured flow arrows on ``img``, one every ``step`` pixels.

    Args:
        img: RGB ``uint8`` ``(H, W, 3)`` canvas (drawn on in place unless converted to gray).
        flow: ``(2, H, W)`` in pixels; the arrow from ``(x, y)`` ends at ``(x + fx, y + fy)``.
        step: grid spacing of the arrows.
        threshold_px: arrows shorter than this are not drawn.
        convert_img_to_gray: draw on a gray copy of ``img`` (colours stay readable).
        mask: ``(H, W)`` bool, where arrows may be drawn (None = everywhere).
        thickness: line thickness.

    Returns:
        the RGB ``uint8`` image with the arrows.
    """
    flow = _to_numpy(flow).astype(np.float32)
    _check_flow(flow, "draw_arrows")
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"draw_arrows: img must be an RGB uint8 (H, W, 3) image, got {img.shape} {img.dtype}")
    if img.shape[:2] != flow.shape[1:]:
        raise ValueError(f"draw_arrows: img {img.shape[:2]} and flow {flow.shape[1:]} sizes differ")
    if step < 1:
        raise ValueError(f"draw_arrows: step must be >= 1, got {step}")
    if convert_img_to_gray:
        img = convert_to_gray(img)
    if not img.flags.writeable or not img.flags.c_contiguous:
        img = np.ascontiguousarray(img).copy()
    h, w = flow.shape[1:]
    ys, xs = np.mgrid[step // 2: h: step, step // 2: w: step]
    ys, xs = ys.ravel(), xs.ravel()
    fx, fy = flow[0, ys, xs], flow[1, ys, xs]
    keep = np.hypot(fx, fy) >= threshold_px
    if mask is not None:
        mask = _to_numpy(mask).astype(bool)
        if mask.shape != (h, w):
            raise ValueError(f"draw_arrows: mask must be (H, W) = {(h, w)}, got {mask.shape}")
        keep &= mask[ys, xs]
    ys, xs, fx, fy = ys[keep], xs[keep], fx[keep], fy[keep]
    colors = direction_colors(fx, fy)
    # One cv2 call per arrow: only every step-th pixel is drawn, so this is a few hundred calls per image.
    for x, y, dx, dy, color in zip(xs, ys, fx, fy, colors, strict=True):
        end = (int(round(x + dx)), int(round(y + dy)))
        cv2.arrowedLine(img, (int(x), int(y)), end, tuple(int(c) for c in color), thickness, cv2.LINE_AA,
                        tipLength=0.3)
    return img


def get_arrows(
    flow: np.ndarray | torch.Tensor,
    base_img: np.ndarray | None = None,
    step: int = 8,
    mask: np.ndarray | torch.Tensor | None = None,
) -> np.ndarray:
    """Flow arrows on ``base_img`` (RGB ``uint8``, converted to gray) or on a black canvas.

    Args:
        flow: ``(2, H, W)`` in pixels.
        base_img: optional RGB ``uint8`` ``(H, W, 3)`` canvas, e.g. a visualisation of the events.
        step: grid spacing of the arrows.
        mask: ``(H, W)`` bool, where arrows may be drawn.

    Returns:
        RGB ``uint8`` ``(H, W, 3)``.
    """
    flow = _to_numpy(flow)
    _check_flow(flow, "get_arrows")
    if base_img is None:
        base_img = np.zeros((*flow.shape[1:], 3), dtype=np.uint8)
    return draw_arrows(base_img, flow, step=step, threshold_px=1, convert_img_to_gray=True, mask=mask)


def flow_to_rgb(flow: np.ndarray | torch.Tensor, max_norm: float | None = None) -> np.ndarray:
    """Dense colour coding of a flow ``(2, H, W)``: hue = direction, value = magnitude / ``max_norm`` (default: the
    largest magnitude in the map), saturation full. Zero flow is black. Returns RGB ``uint8`` ``(H, W, 3)``."""
    flow = _to_numpy(flow).astype(np.float32)
    _check_flow(flow, "flow_to_rgb")
    mag = np.hypot(flow[0], flow[1])
    if max_norm is None:
        max_norm = float(mag.max()) if mag.size else 0.0
    hsv = np.empty((*mag.shape, 3), dtype=np.uint8)
    hsv[..., 0] = _opencv_hue(flow[0], flow[1])
    hsv[..., 1] = 255
    scale = 255.0 / max_norm if max_norm > 0 else 0.0
    hsv[..., 2] = np.clip(mag * scale, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def _resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, 2, h, w)`` to ``size`` with the vectors rescaled to the new pixel size."""
    h, w = flow.shape[-2:]
    if (h, w) == tuple(size):
        return flow
    out = F.interpolate(flow.float(), size=size, mode="bilinear", align_corners=False)
    scale = torch.tensor([size[1] / w, size[0] / h], dtype=out.dtype, device=out.device).view(1, 2, 1, 1)
    return out * scale


def draw_flow_on_grid(
    input_tensor: np.ndarray | torch.Tensor,
    flows: Sequence[torch.Tensor] | torch.Tensor,
    grid: np.ndarray,
    make_img_fun: Callable[[np.ndarray], np.ndarray],
    scale: int = -1,
    step: int = 8,
    mask_by_input: bool = True,
    draw_dense: bool = False,
) -> np.ndarray:
    """Draws the flow of every (time bin, batch element) into a video grid, in place.

    Args:
        input_tensor: ``(T, B, C, H, W)`` features.
        flows: flow pyramid (list coarse to fine, or one tensor), each ``(T, B, 2, h, w)``; the chosen level is
            resized to ``(H, W)`` with its vectors rescaled to input pixels.
        grid: ``(T, m * H, n * W, 3)`` uint8 with ``m * n >= B``; element ``b`` goes to row ``b // n``, column
            ``b % n``.
        make_img_fun: maps one ``(C, H, W)`` numpy feature to an RGB ``uint8`` ``(H, W, 3)`` image.
        scale: index of the pyramid level to draw (-1 = finest).
        step: arrow spacing.
        mask_by_input: only draw flow at pixels with non-zero input.
        draw_dense: draw the dense colour-coded flow (:func:`flow_to_rgb`) instead of arrows.

    Returns:
        ``grid``.
    """
    inputs = _to_numpy(input_tensor)
    if inputs.ndim != 5:
        raise ValueError(f"draw_flow_on_grid: input_tensor must be (T, B, C, H, W), got {inputs.shape}")
    flow = flows if isinstance(flows, torch.Tensor) else flows[scale]
    flow = torch.as_tensor(flow)
    t_bins, batch, _, h, w = inputs.shape
    if flow.ndim != 5 or tuple(flow.shape[:3]) != (t_bins, batch, 2):
        raise ValueError(f"draw_flow_on_grid: flow must be (T, B, 2, h, w) with T={t_bins}, B={batch}, "
                         f"got {tuple(flow.shape)}")
    if grid.ndim != 4 or grid.shape[0] < t_bins or grid.shape[3] != 3 or grid.shape[1] % h or grid.shape[2] % w:
        raise ValueError(f"draw_flow_on_grid: grid must be (T, m*{h}, n*{w}, 3), got {grid.shape}")
    n_cols = grid.shape[2] // w
    if (grid.shape[1] // h) * n_cols < batch:
        raise ValueError(f"draw_flow_on_grid: grid {grid.shape} has fewer than B={batch} cells")
    flow = _resize_flow(flow.detach().cpu().flatten(0, 1), (h, w)).view(t_bins, batch, 2, h, w).numpy()
    for t in range(t_bins):
        for b in range(batch):
            img = make_img_fun(inputs[t, b])
            mask = np.abs(inputs[t, b]).sum(0) > 0 if mask_by_input else None
            if draw_dense:
                dense = flow_to_rgb(flow[t, b])
                out = convert_to_gray(img)
                where = np.ones((h, w), bool) if mask is None else mask
                out[where] = dense[where]
            else:
                out = draw_arrows(img, flow[t, b], step=step, threshold_px=1, mask=mask)
            row, col = divmod(b, n_cols)
            grid[t, row * h: (row + 1) * h, col * w: (col + 1) * w] = out
    return grid
