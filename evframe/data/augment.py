"""Training-time augmentation of event tensors that respects recurrent streams.

A recurrent model carries memory from one batch to the next along each stream (slot ``b`` of a
:class:`~evframe.data.sequential.SequentialDataLoader`), so an augmentation must stay the same for a whole
recording: flipping batch ``k`` of a recording but not batch ``k + 1`` would hand the network a mirrored memory.
:class:`StreamFlip` therefore draws its flips only when a stream starts a recording (``mask_keep_memory == 0``) and
keeps them until the next start.

Why flips help self-supervised flow: the losses are computed on the augmented tensor itself, so no label has to be
transformed, and a mirrored scene is as plausible as the original; the network can no longer lean on the dominant
direction of motion of the few training recordings.
"""

from __future__ import annotations

import torch
from torch import nn


class StreamFlip(nn.Module):
    """Random horizontal / vertical flips, constant along each stream.

    Args:
        hflip: probability of mirroring a recording left-right.
        vflip: probability of mirroring a recording upside-down.
        seed: seed of the module's own random generator (the draws do not disturb the global RNG, so the rest of
            a seeded run is unchanged); None derives it from ``torch.initial_seed()``.

    ``forward(inputs (T, B, C, H, W), mask_keep_memory (B,))`` returns the flipped inputs (same shape). The draw
    for a slot is renewed where ``mask_keep_memory == 0``; :meth:`reset` forgets all draws (new epoch/loader).
    ``flips`` holds the current ``(B, 2)`` bool draws (column 0 horizontal, 1 vertical).
    """

    def __init__(self, hflip: float = 0.5, vflip: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= float(p) <= 1.0:
                raise ValueError(f"StreamFlip: {name} is a probability in [0, 1], got {p}")
        self.probabilities = torch.tensor([float(hflip), float(vflip)])
        self.generator = torch.Generator()
        self.generator.manual_seed(int(torch.initial_seed() if seed is None else seed) % (2**63))
        self.flips: torch.Tensor | None = None

    def extra_repr(self) -> str:
        return f"hflip={float(self.probabilities[0])}, vflip={float(self.probabilities[1])}"

    def reset(self) -> None:
        self.flips = None

    # the generator's state travels in the module's state_dict (so in checkpoints): a resumed run draws the flips
    # the uninterrupted run would have drawn
    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])

    def _draw(self, count: int) -> torch.Tensor:
        return torch.rand(count, 2, generator=self.generator) < self.probabilities

    def update(self, mask_keep_memory: torch.Tensor) -> torch.Tensor:
        """Renews the draws of streams starting a recording; returns the ``(B, 2)`` bool flips (CPU)."""
        keep = torch.as_tensor(mask_keep_memory).detach().to("cpu").reshape(-1) > 0
        if self.flips is None or self.flips.shape[0] != keep.shape[0]:
            self.flips = self._draw(keep.shape[0])
            return self.flips
        fresh = self._draw(keep.shape[0])
        self.flips = torch.where(keep.unsqueeze(1), self.flips, fresh)
        return self.flips

    def forward(self, inputs: torch.Tensor, mask_keep_memory: torch.Tensor) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"StreamFlip: inputs must be (T, B, C, H, W), got shape {tuple(inputs.shape)}")
        if torch.as_tensor(mask_keep_memory).numel() != inputs.shape[1]:
            raise ValueError(f"StreamFlip: mask_keep_memory has {torch.as_tensor(mask_keep_memory).numel()} "
                             f"entries for a batch of {inputs.shape[1]} streams")
        flips = self.update(mask_keep_memory).to(inputs.device)
        out = inputs
        if bool(flips[:, 0].any()):
            out = torch.where(flips[:, 0].view(1, -1, 1, 1, 1), out.flip(-1), out)
        if bool(flips[:, 1].any()):
            out = torch.where(flips[:, 1].view(1, -1, 1, 1, 1), out.flip(-2), out)
        return out
