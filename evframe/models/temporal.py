"""Sequence helpers and convolutional recurrent layers for ``(T, B, C, H, W)`` event tensors.

* :func:`time_to_batch` / :func:`batch_to_time` fold the time axis into the batch axis so 2-D layers can run on
  all time steps at once; :func:`seq_wise` wraps a 2-D module to do exactly that.
* :class:`ConvRNN` = an input-to-hidden convolution run in parallel over all time steps (``conv_x2h``) followed by
  a recurrent cell looped over ``T`` (``timepool``, a :class:`ConvLSTMCell` or :class:`ConvGRUCell`).
  The hidden state persists across ``forward`` calls, so a long recording can be fed batch after batch
  (streaming). Call :meth:`ConvRNN.reset` with the loader's ``mask_keep_memory`` before each batch (zeroes the
  state of streams that start a new recording) and :meth:`ConvRNN.detach` after each optimiser step (truncated
  back-propagation through time: gradients stop at the batch boundary but the state values carry on).
* :class:`BinHistory` stacks each bin with the bins before it (kept across calls the same way).
* :func:`reset_recurrent_states` / :func:`detach_recurrent_states` apply these to every stateful module in a tree.
"""

from __future__ import annotations

import torch
from torch import nn

from evframe.models.layers import conv_layer

CELLS = ("lstm", "gru")


def _check_5d(x: torch.Tensor, where: str) -> None:
    if x.ndim != 5:
        raise ValueError(f"{where}: expected a 5-D tensor (T, B, C, H, W), got shape {tuple(x.shape)}")


def time_to_batch(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Flattens ``(T, B, ...)`` into ``(T*B, ...)`` (time-major, so row ``t*B + b``); returns it and ``B``."""
    if x.ndim < 2:
        raise ValueError(f"time_to_batch: expected at least (T, B, ...), got shape {tuple(x.shape)}")
    t, b = x.shape[:2]
    return x.reshape(t * b, *x.shape[2:]), b


def batch_to_time(x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Inverse of :func:`time_to_batch`: ``(T*B, ...)`` -> ``(T, B, ...)``."""
    if batch_size < 1 or x.shape[0] % batch_size:
        raise ValueError(
            f"batch_to_time: first dim {x.shape[0]} is not a multiple of batch_size={batch_size}"
        )
    return x.reshape(x.shape[0] // batch_size, batch_size, *x.shape[1:])


class SequenceWise(nn.Module):
    """Applies a 2-D module independently (and in parallel) to every time step of ``(T, B, C, H, W)``."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_5d(x, f"seq_wise({type(self.module).__name__})")
        flat, b = time_to_batch(x)
        return batch_to_time(self.module(flat), b)

    def __repr__(self) -> str:
        return f"SequenceWise(\n  {self.module!r}\n)"


def seq_wise(module: nn.Module) -> SequenceWise:
    """Wraps a module taking ``(N, C, H, W)`` so that it takes and returns ``(T, B, C, H, W)``."""
    return SequenceWise(module)


class _RecurrentCell(nn.Module):
    """Base of the recurrent cells: holds the state tensors (``state_names``) between calls.

    The state is created lazily (zeros) on the first step, and re-created whenever the batch size, spatial size,
    device or dtype of the incoming sequence differs from the stored one.
    """

    state_names: tuple[str, ...] = ()
    num_gates: int = 1

    def __init__(self, hidden_channels: int, hidden_kernel_size: int = 3, separable_hidden: bool = False) -> None:
        super().__init__()
        if hidden_kernel_size % 2 != 1:
            raise ValueError(f"ConvRNN: hidden_kernel_size must be odd to keep the size, got {hidden_kernel_size}")
        self.hidden_channels = hidden_channels
        self.out_channels = hidden_channels
        # The bias lives in conv_x2h; a second bias here would be redundant.
        if separable_hidden and hidden_kernel_size > 1:
            self.conv_h2h: nn.Module = nn.Sequential(
                nn.Conv2d(hidden_channels, hidden_channels, hidden_kernel_size, padding=hidden_kernel_size // 2,
                          groups=hidden_channels, bias=False),
                nn.Conv2d(hidden_channels, self.num_gates * hidden_channels, 1, bias=False),
            )
        else:
            self.conv_h2h = nn.Conv2d(hidden_channels, self.num_gates * hidden_channels, hidden_kernel_size,
                                      padding=hidden_kernel_size // 2, bias=False)
        for name in self.state_names:
            setattr(self, name, None)

    # -- state handling ------------------------------------------------------------------------------------
    def _states(self) -> list[torch.Tensor | None]:
        return [getattr(self, name) for name in self.state_names]

    def _ensure_state(self, like: torch.Tensor) -> None:
        """Creates zero states shaped like one time step of the hidden sequence if absent or incompatible."""
        b, _, h, w = like.shape
        shape = (b, self.hidden_channels, h, w)
        for name, state in zip(self.state_names, self._states(), strict=True):
            if state is None or state.shape != shape or state.device != like.device or state.dtype != like.dtype:
                setattr(self, name, like.new_zeros(shape))

    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Multiplies the state by ``mask_keep_memory`` ``(B,)`` (1 keeps, 0 zeroes a stream).

        A state of another batch size is dropped (re-initialised to zeros on the next step); the mask is moved to
        the state's device (a state on another device than the next input is re-initialised by that step).
        """
        mask = torch.as_tensor(mask_keep_memory)
        if mask.ndim != 1:
            raise ValueError(f"ConvRNN.reset: mask_keep_memory must have shape (B,), got {tuple(mask.shape)}")
        for name, state in zip(self.state_names, self._states(), strict=True):
            if state is None:
                continue
            if state.shape[0] != mask.shape[0]:
                setattr(self, name, None)
                continue
            setattr(self, name, state * mask.to(device=state.device, dtype=state.dtype).view(-1, 1, 1, 1))

    def detach(self) -> None:
        """Cuts the autograd graph at the current state (truncated BPTT); keeps its values."""
        for name, state in zip(self.state_names, self._states(), strict=True):
            if state is not None:
                setattr(self, name, state.detach())

    def clear(self) -> None:
        """Drops the state entirely (next call starts from zeros)."""
        for name in self.state_names:
            setattr(self, name, None)

    # -- stepping ------------------------------------------------------------------------------------------
    def step(self, gates_x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input-to-hidden pre-activations ``(T, B, num_gates*hidden, H, W)`` -> hidden ``(T, B, hidden, H, W)``."""
        _check_5d(x, type(self).__name__)
        expected = self.num_gates * self.hidden_channels
        if x.shape[2] != expected:
            raise ValueError(f"{type(self).__name__}: expected {expected} channels, got {x.shape[2]}")
        self._ensure_state(x[0, :, : self.hidden_channels])
        return torch.stack([self.step(xt) for xt in x.unbind(0)], 0)


class ConvLSTMCell(_RecurrentCell):
    """Convolutional LSTM cell. Gate order in the ``4*hidden`` channels: input, forget, output, candidate.

    ``c' = f*c + i*g``, ``h' = o*tanh(c')`` with ``i,f,o = sigmoid(x_* + W_h* h)``, ``g = tanh(x_g + W_hg h)``.
    """

    state_names = ("prev_h", "prev_c")
    num_gates = 4

    def step(self, gates_x: torch.Tensor) -> torch.Tensor:
        gates = gates_x + self.conv_h2h(self.prev_h)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * self.prev_c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        self.prev_h, self.prev_c = h, c
        return h


class ConvGRUCell(_RecurrentCell):
    """Convolutional GRU cell. Gate order in the ``3*hidden`` channels: reset, update, candidate.

    ``r = sigmoid(x_r + W_hr h)``, ``z = sigmoid(x_z + W_hz h)``, ``n = tanh(x_n + r * (W_hn h))``,
    ``h' = (1 - z) * n + z * h``.
    """

    state_names = ("prev_h",)
    num_gates = 3

    def step(self, gates_x: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = gates_x.chunk(3, dim=1)
        hr, hz, hn = self.conv_h2h(self.prev_h).chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        h = (1 - z) * n + z * self.prev_h
        self.prev_h = h
        return h


class ConvRNN(nn.Module):
    """Convolutional recurrent layer for sequences ``(T, B, in_channels, H, W)``.

    Output ``(T, B, out_channels, H', W')`` with ``H' = floor((H + 2*padding - dilation*(kernel_size-1) - 1)
    / stride) + 1`` (as ``nn.Conv2d``).

    Args:
        in_channels, out_channels: feature maps in and out (``out_channels`` is the hidden size).
        kernel_size, stride, padding, dilation: of the input-to-hidden convolution ``conv_x2h``.
        cell: ``"lstm"`` or ``"gru"``.
        separable: make ``conv_x2h`` depthwise-separable.
        hidden_kernel_size: kernel of the hidden-to-hidden convolution (odd; 1 = pointwise).
        separable_hidden: make the hidden-to-hidden convolution depthwise-separable.
        norm: normalisation after ``conv_x2h`` (see :data:`evframe.models.layers.NORMS`).

    Submodules: ``conv_x2h`` (a :class:`SequenceWise`, run on all steps at once) and ``timepool`` (the cell, looped
    over ``T``, holding the state). State persists across calls; see :meth:`reset` and :meth:`detach`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        cell: str = "lstm",
        separable: bool = False,
        hidden_kernel_size: int = 3,
        separable_hidden: bool = False,
        norm: str = "none",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"ConvRNN: cell={cell!r} is not one of {CELLS}")
        cell_cls = ConvLSTMCell if cell == "lstm" else ConvGRUCell
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.cell = cell
        self.timepool = cell_cls(out_channels, hidden_kernel_size, separable_hidden)
        self.conv_x2h = seq_wise(
            conv_layer(in_channels, cell_cls.num_gates * out_channels, kernel_size, stride, padding, dilation,
                       norm=norm, act="none", separable=separable)
        )
        if cell == "lstm":
            # Forget-gate bias 1: the cell starts by remembering, which helps long sequences train.
            bias = self._x2h_bias()
            if bias is not None:
                with torch.no_grad():
                    bias[out_channels: 2 * out_channels].fill_(1.0)

    def _x2h_bias(self) -> torch.Tensor | None:
        for module in reversed(list(self.conv_x2h.modules())):
            if isinstance(module, nn.Conv2d):
                return module.bias
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_5d(x, "ConvRNN")
        if x.shape[2] != self.in_channels:
            raise ValueError(f"ConvRNN: expected {self.in_channels} input channels, got {x.shape[2]}")
        return self.timepool(self.conv_x2h(x))

    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the state of streams whose ``mask_keep_memory`` ``(B,)`` is 0 (new recording), keeps others."""
        self.timepool.reset(mask_keep_memory)

    def detach(self) -> None:
        """Truncated BPTT: the next call's gradients stop at the current state."""
        self.timepool.detach()

    def clear(self) -> None:
        """Drops the state (the next call starts from zeros whatever the batch size)."""
        self.timepool.clear()


class BinHistory(nn.Module):
    """Stacks each time bin with the ``num_bins`` bins before it: ``(T, B, C, H, W) -> (T, B, (1 + n) * C, H, W)``.

    Output channels ``[x_t, x_{t-1}, ..., x_{t-n}]`` (C each). The bins before the first one of a call come from the
    previous call (the same streams, as a :class:`ConvRNN` state), so a network looking at bin ``t`` sees
    ``(1 + n) * delta_t`` of events at full resolution however the recording is cut into batches. This is what lets
    it measure motion slower than a pixel per bin, which leaves no trace inside one bin. The stored bins are input
    data (never part of the graph); :meth:`reset` with ``mask_keep_memory`` zeroes them for streams that start a new
    recording (an empty past: no events), :meth:`clear` drops them, :meth:`detach` is a no-op.
    """

    def __init__(self, num_bins: int) -> None:
        super().__init__()
        if int(num_bins) != num_bins or num_bins < 1:
            raise ValueError(f"BinHistory: num_bins must be an integer >= 1, got {num_bins!r}")
        self.num_bins = int(num_bins)
        self.past: torch.Tensor | None = None  # (n, B, C, H, W), oldest first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_5d(x, "BinHistory")
        n = self.num_bins
        past = self.past
        if past is None or past.shape[1:] != x.shape[1:] or past.device != x.device or past.dtype != x.dtype:
            past = x.new_zeros((n, *x.shape[1:]))
        sequence = torch.cat((past, x), dim=0)  # (n + T, B, C, H, W)
        t = x.shape[0]
        self.past = sequence[-n:].detach()
        # channel block j holds x_{t-j}: the slice of `sequence` shifted back by j bins
        return torch.cat([sequence[n - j: n - j + t] for j in range(n + 1)], dim=2)

    def reset(self, mask_keep_memory: torch.Tensor) -> None:
        """Zeroes the stored bins of streams whose ``mask_keep_memory`` ``(B,)`` is 0; drops them on a batch size
        change."""
        if self.past is None:
            return
        mask = torch.as_tensor(mask_keep_memory)
        if mask.ndim != 1:
            raise ValueError(f"BinHistory.reset: mask_keep_memory must have shape (B,), got {tuple(mask.shape)}")
        if self.past.shape[1] != mask.shape[0]:
            self.past = None
            return
        self.past = self.past * mask.to(device=self.past.device, dtype=self.past.dtype).view(1, -1, 1, 1, 1)

    def detach(self) -> None:
        """Nothing to cut: the stored bins are inputs, kept outside the graph."""

    def clear(self) -> None:
        """Drops the stored bins (the next call starts with an empty past)."""
        self.past = None


#: Modules holding a per-stream state across calls (reset by ``mask_keep_memory``).
STATEFUL_MODULES: tuple[type[nn.Module], ...] = (ConvRNN, BinHistory)


def recurrent_modules(module: nn.Module) -> list[nn.Module]:
    """Every module inside ``module`` (itself included) that keeps a state across calls: :class:`ConvRNN` and
    :class:`BinHistory`."""
    return [m for m in module.modules() if isinstance(m, STATEFUL_MODULES)]


def reset_recurrent_states(module: nn.Module, mask_keep_memory: torch.Tensor) -> None:
    """Calls ``reset`` on every stateful module (see :func:`recurrent_modules`) inside ``module``."""
    for rnn in recurrent_modules(module):
        rnn.reset(mask_keep_memory)


def detach_recurrent_states(module: nn.Module) -> None:
    """Calls ``detach`` on every stateful module (see :func:`recurrent_modules`) inside ``module``."""
    for rnn in recurrent_modules(module):
        rnn.detach()


def clear_recurrent_states(module: nn.Module) -> None:
    """Calls ``clear`` on every stateful module (see :func:`recurrent_modules`) inside ``module``."""
    for rnn in recurrent_modules(module):
        rnn.clear()
