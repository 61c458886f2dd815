"""Which dimensions of a tensor carry the image's spatial axes, followed through layout operations.

The input image is ``[N, C, H, W]``: dim 2 carries axis 0 (height), dim 3 axis 1 (width). Reshapes,
permutes and flattens move these axes around (a ViT turns ``[N, C, H, W]`` into ``[N, H*W, C]`` tokens,
ConvNeXt into ``[N, H, W, C]``). Knowing where they went is what lets the analyzer tell a Linear applied
per position (a 1x1 op) from a Linear over flattened positions (a global op). A layout is a tuple with one
entry per tensor dimension: the frozenset of spatial axes that dimension carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Layout = tuple[frozenset[int], ...]

NONE: frozenset[int] = frozenset()
HEIGHT, WIDTH = 0, 1
AXES = (HEIGHT, WIDTH)
AXIS_NAMES = ("height", "width")


def image_layout(rank: int = 4) -> Layout:
    """The layout of an image batch: the last two dims carry height and width."""
    return (NONE,) * (rank - 2) + (frozenset({HEIGHT}), frozenset({WIDTH}))


def spatial_axes(layout: Layout, dims: Iterable[int] | None = None) -> frozenset[int]:
    """The spatial axes carried by ``dims`` of ``layout`` (all dims when ``dims`` is None)."""
    rank = len(layout)
    picked = range(rank) if dims is None else (d % rank for d in dims)
    axes: set[int] = set()
    for d in picked:
        axes |= layout[d]
    return frozenset(axes)


def normalize_dims(dims: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
    """Turn a ``dim`` argument (int, sequence, or None for all) into sorted non-negative dims."""
    if dims is None:
        return tuple(range(rank))
    if isinstance(dims, int):
        dims = (dims,)
    return tuple(sorted({int(d) % rank for d in dims})) if rank else ()


def permute(layout: Layout, dims: Sequence[int]) -> Layout:
    """Layout after ``tensor.permute(*dims)``."""
    rank = len(layout)
    return tuple(layout[int(d) % rank] for d in dims)


def transpose(layout: Layout, dim0: int, dim1: int) -> Layout:
    """Layout after ``tensor.transpose(dim0, dim1)``."""
    rank = len(layout)
    order = list(range(rank))
    a, b = dim0 % rank, dim1 % rank
    order[a], order[b] = order[b], order[a]
    return permute(layout, order)


def movedim(layout: Layout, source: Sequence[int], destination: Sequence[int]) -> Layout:
    """Layout after ``torch.movedim(tensor, source, destination)``."""
    rank = len(layout)
    src = [s % rank for s in source]
    dst = [d % rank for d in destination]
    order: list[int | None] = [None] * rank
    for s, d in zip(src, dst, strict=True):
        order[d] = s
    rest = iter(d for d in range(rank) if d not in src)
    return tuple(layout[o if o is not None else next(rest)] for o in order)


def flatten(layout: Layout, start: int = 0, end: int = -1) -> Layout:
    """Layout after ``torch.flatten(tensor, start, end)``: the merged dim carries all their axes."""
    rank = len(layout)
    if rank == 0:
        return (NONE,)
    s, e = start % rank, end % rank
    return (*layout[:s], spatial_axes(layout, range(s, e + 1)), *layout[e + 1 :])


def squeeze(layout: Layout, shape: Sequence[int], dims: int | Sequence[int] | None) -> Layout:
    """Layout after ``tensor.squeeze(dims)``; a squeezed size-1 dim hands its axes to a neighbour."""
    rank = len(layout)
    drop = {d for d in normalize_dims(dims, rank) if shape[d] == 1}
    return reshape(layout, shape, [s for d, s in enumerate(shape) if d not in drop])


def unsqueeze(layout: Layout, dim: int) -> Layout:
    """Layout after ``tensor.unsqueeze(dim)``."""
    rank = len(layout) + 1
    d = dim % rank
    return (*layout[:d], NONE, *layout[d:])


def reduce(layout: Layout, dims: Sequence[int], *, keepdim: bool) -> Layout:
    """Layout after reducing ``dims`` (mean, sum, amax, ...)."""
    if keepdim:
        return tuple(NONE if d in dims else axes for d, axes in enumerate(layout))
    return tuple(axes for d, axes in enumerate(layout) if d not in dims)


def broadcast(layouts: Sequence[Layout], rank: int) -> Layout:
    """Layout of the result of an element-wise op: inputs right-aligned, axes united per dim."""
    out = [set() for _ in range(rank)]
    for layout in layouts:
        offset = rank - len(layout)
        for d, axes in enumerate(layout):
            if d + offset >= 0:
                out[d + offset] |= axes
    return tuple(frozenset(axes) for axes in out)


def reshape(layout: Layout, in_shape: Sequence[int], out_shape: Sequence[int]) -> Layout:
    """Layout after ``tensor.reshape(out_shape)``.

    Dims are grouped into the smallest runs whose sizes multiply to the same number on both sides (the
    way a reshape can only merge or split contiguous dims); every output dim of a group carries the axes
    of the group's input dims. Size-1 dims join the group before them, so ``[N, C, 1, 1] -> [N, C]`` keeps
    the (collapsed) spatial axes on the channel dim, as ``torch.flatten`` would.
    """
    in_shape, out_shape = list(in_shape), list(out_shape)
    out: list[set[int]] = [set() for _ in out_shape]
    i = j = 0
    n, m = len(in_shape), len(out_shape)
    while i < n or j < m:
        group_in, group_out = [], []
        p_in = p_out = 1
        if i < n:
            group_in.append(i)
            p_in = in_shape[i]
            i += 1
        if j < m:
            group_out.append(j)
            p_out = out_shape[j]
            j += 1
        while p_in != p_out and (i < n or j < m):
            if (p_in < p_out and i < n) or j >= m:
                group_in.append(i)
                p_in *= in_shape[i]
                i += 1
            else:
                group_out.append(j)
                p_out *= out_shape[j]
                j += 1
        while i < n and in_shape[i] == 1:
            group_in.append(i)
            i += 1
        while j < m and out_shape[j] == 1:
            group_out.append(j)
            j += 1
        axes = spatial_axes(layout, group_in) if group_in else NONE
        for k in group_out:
            out[k] |= axes
    return tuple(frozenset(a) for a in out)
