"""Where the image's positions live in a tensor, followed exactly through reshapes, permutes and flattens.

The input image is ``[N, C, H, W]``. Layout operations move its positions around: a ViT turns the map into
``[N, H*W, C]`` tokens, ConvNeXt into ``[N, H, W, C]``, MaxViT splits it into windows ``[N, C, H/7, 7, W/7,
7]``. Knowing where the positions went is what tells a Linear applied per position (a 1x1 op) from one
over flattened positions (global), and attention inside 7x7 windows (a 7x7 kernel) from attention over all
tokens (global).

A layout has one entry per tensor dimension: the ordered *factors* of that dimension, outer to inner.
A factor says which spatial axis it indexes (or None: batch, channels, features), how many values it
takes (its extent), and how far apart the positions it indexes are (its stride, in positions of the
current feature map). Merging dims concatenates factors; splitting a dim peels factors off, dividing one
where needed, so a reshape that only regroups positions is tracked exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

HEIGHT, WIDTH = 0, 1
AXES = (HEIGHT, WIDTH)
AXIS_NAMES = ("height", "width")


@dataclass(frozen=True)
class Factor:
    """One factor of a tensor dimension: ``extent`` positions of ``axis`` spaced ``stride`` apart."""

    axis: int | None  # HEIGHT, WIDTH, or None for a non-spatial factor
    extent: int
    stride: int = 1


Dim = tuple[Factor, ...]
Layout = tuple[Dim, ...]


def normalized(dim: Dim) -> Dim:
    """Join neighbouring factors of one axis that index contiguous positions (8 windows of 7 -> 56)."""
    out: list[Factor] = []
    for factor in dim:
        if out and factor.axis is not None and out[-1].axis == factor.axis:
            outer = out[-1]
            if outer.stride == factor.extent * factor.stride:
                out[-1] = Factor(factor.axis, outer.extent * factor.extent, factor.stride)
                continue
        out.append(factor)
    return tuple(out)


def plain(size: int) -> Dim:
    """A dimension that indexes no position (batch, channels, features)."""
    return (Factor(None, size),) if size != 1 else ()


def image_layout(shape: Sequence[int]) -> Layout:
    """The layout of an image batch ``[N, C, H, W]`` (more leading dims are non-spatial)."""
    *lead, h, w = shape
    return (*(plain(s) for s in lead), (Factor(HEIGHT, h),), (Factor(WIDTH, w),))


def is_image_layout(layout: Layout) -> bool:
    """``[N, C, H, W]`` with one whole-axis factor per spatial dim: a feature map a conv can read."""
    if len(layout) != 4 or spatial_axes(layout, (0, 1)):
        return False
    return all(len(layout[d]) == 1 and layout[d][0].axis == axis and layout[d][0].stride == 1 for d, axis in
               ((2, HEIGHT), (3, WIDTH)))  # fmt: skip


def size_of(dim: Dim) -> int:
    return math.prod(f.extent for f in dim)


def positions(layout: Layout) -> dict[int, int]:
    """How many positions of each axis a layout holds (the product of that axis's factors)."""
    counts: dict[int, int] = {}
    for dim in layout:
        for factor in dim:
            if factor.axis is not None:
                counts[factor.axis] = counts.get(factor.axis, 1) * factor.extent
    return counts


def common_stride(out: list[Dim], axis: int) -> tuple[int, list[Dim]]:
    """The stride every factor of ``axis`` left in ``out`` shares (their gcd), and ``out`` with it divided
    out: what an op that mixes positions contributes to the jump of that axis."""
    left = [f.stride for dim in out for f in dim if f.axis == axis]
    stride = math.gcd(*left) if left else 1
    if stride > 1:
        out = [
            tuple(replace(f, stride=f.stride // stride) if f.axis == axis else f for f in dim) for dim in out
        ]
    return stride, out


def axes_of(dim: Dim) -> frozenset[int]:
    return frozenset(f.axis for f in dim if f.axis is not None)


def spatial_axes(layout: Layout, dims: Iterable[int] | None = None) -> frozenset[int]:
    """The spatial axes carried by ``dims`` of ``layout`` (all dims when ``dims`` is None)."""
    rank = len(layout)
    picked = range(rank) if dims is None else (d % rank for d in dims)
    axes: set[int] = set()
    for d in picked:
        axes |= axes_of(layout[d])
    return frozenset(axes)


def spatial_size(layout: Layout, shape: Sequence[int]) -> tuple[int, int] | None:
    """(H, W) where each axis lives in one dim as one stride-1 factor, else None."""
    size = []
    for axis in AXES:
        found = [(d, f) for d, dim in enumerate(layout) for f in dim if f.axis == axis]
        if len(found) != 1 or found[0][1].stride != 1 or len(layout[found[0][0]]) != 1:
            return None
        size.append(shape[found[0][0]])
    return size[0], size[1]


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
    order = list(range(len(layout)))
    a, b = dim0 % len(layout), dim1 % len(layout)
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
    """Layout after ``torch.flatten(tensor, start, end)``: the merged dim carries all their factors in order."""
    rank = len(layout)
    if rank == 0:
        return ((),)
    s, e = start % rank, end % rank
    merged = normalized(tuple(f for dim in layout[s : e + 1] for f in dim))
    return (*layout[:s], merged, *layout[e + 1 :])


def unsqueeze(layout: Layout, dim: int) -> Layout:
    """Layout after ``tensor.unsqueeze(dim)``."""
    d = dim % (len(layout) + 1)
    return (*layout[:d], (), *layout[d:])


def drop(layout: Layout, dims: Iterable[int]) -> Layout:
    """Layout without ``dims`` (an int index, a reduction without keepdim)."""
    removed = set(dims)
    return tuple(dim for d, dim in enumerate(layout) if d not in removed)


def reshape(layout: Layout, in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[Layout, bool]:
    """Layout after ``tensor.reshape(out_shape)``, and whether it is exact.

    The factors of all dims, outer to inner, are dealt out to the new dims by size; a factor that a new dim
    only partly takes is divided (``H=56`` split into ``8 x 7`` becomes the factors ``8`` with stride 7 and
    ``7`` with stride 1). Factors of extent 1 left over (``[N, C, 1, 1] -> [N, C]``) join the last dim, so a
    Linear after ``view(N, -1)`` still sees the (collapsed) positions, as after ``torch.flatten``. When the
    sizes do not divide, the positions are spread over every dim they could be in, and ``False`` is returned.
    """
    lead = 0  # dims kept as they are at both ends (a qkv split of the last dim leaves the tokens alone)
    while lead < min(len(in_shape), len(out_shape)) - 1 and in_shape[lead] == out_shape[lead]:
        lead += 1
    if lead:
        rest, exact = reshape(layout[lead:], in_shape[lead:], out_shape[lead:])
        return (*layout[:lead], *rest), exact
    if any(size_of(dim) != size for dim, size in zip(layout, in_shape, strict=True)):
        return _coarse_reshape(layout, in_shape, out_shape), False
    atoms = [f for dim in layout for f in dim]
    out: list[Dim] = []
    for size in out_shape:
        taken: list[Factor] = []
        product = 1
        if size == 1 and atoms and atoms[0].extent == 1:
            taken.append(atoms.pop(0))
        while product < size:
            if not atoms:
                return _coarse_reshape(layout, in_shape, out_shape), False
            atom = atoms.pop(0)
            if product * atom.extent <= size:
                taken.append(atom)
                product *= atom.extent
                continue
            need = size // product
            if size % product or atom.extent % need:
                return _coarse_reshape(layout, in_shape, out_shape), False
            inner = atom.extent // need
            taken.append(replace(atom, extent=need, stride=atom.stride * inner))
            atoms.insert(0, replace(atom, extent=inner))
            product *= need
        out.append(normalized(tuple(taken)))
    if atoms and out:
        out[-1] = out[-1] + tuple(atoms)  # only extent-1 factors can be left
    return tuple(out), True


def _coarse_reshape(layout: Layout, in_shape: Sequence[int], out_shape: Sequence[int]) -> Layout:
    """Group dims whose sizes multiply to the same number; each new dim carries all axes of its group."""
    out: list[Dim] = [() for _ in out_shape]
    i = j = 0
    n, m = len(in_shape), len(out_shape)
    while i < n or j < m:
        group_in, group_out, p_in, p_out = [], [], 1, 1
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
        factors = tuple(Factor(f.axis, 1) for d in group_in for f in layout[d] if f.axis is not None)
        for k in group_out:
            out[k] = factors + plain(out_shape[k])
    return tuple(out)


def broadcast(inputs: Sequence[tuple[Layout, Sequence[int]]], out_shape: Sequence[int]) -> Layout:
    """Layout of an element-wise result: inputs right-aligned; a dim takes the factors of an input whose
    size there matches the output (a broadcast size-1 dim contributes nothing)."""
    rank = len(out_shape)
    out: list[Dim] = []
    for d in range(rank):
        chosen: Dim | None = None
        for layout, shape in inputs:
            k = d - (rank - len(layout))
            if k < 0:
                continue
            if shape[k] == out_shape[d] and (chosen is None or (not axes_of(chosen) and axes_of(layout[k]))):
                chosen = layout[k]
        out.append(chosen if chosen is not None else plain(out_shape[d]))
    return tuple(out)


def resized(layout: Layout, out_shape: Sequence[int]) -> Layout:
    """Layout after an op that keeps the dims but changes their sizes (conv, pooling, resampling): a dim
    with one spatial factor keeps its axis at the new size; other dims become plain dims of their size."""
    out = []
    for dim, size in zip(layout, out_shape, strict=True):
        spatial = [f for f in dim if f.axis is not None]
        if len(spatial) == 1 and len(dim) == 1:
            out.append((Factor(spatial[0].axis, size),))
        elif size_of(dim) == size:
            out.append(dim)
        else:
            out.append(plain(size))
    return tuple(out)


@dataclass(frozen=True)
class Mixing:
    """What mixing some dims of a tensor does to one axis: a window of ``span`` positions, or all of them."""

    span: int = 1
    unbounded: bool = False
    stride: int = 1  # the positions left after the op are this far apart (the op subsampled the axis)


def mix(in_layout: Layout, dims: Iterable[int], out_layout: Layout) -> tuple[tuple[Mixing, Mixing], Layout]:
    """The effect, per axis, of an op that combines all values along ``dims`` of its input.

    Mixing every factor of an axis reaches all its positions (global). Mixing only some factors reaches a
    window: the span of those factors (a 7x7 window partition mixes 7 neighbours; a grid partition mixes 8
    positions 7 apart, a span of 50). When the op consumes the factors it mixed (a Linear over the
    ``p x p`` pixels of a patch), the positions left are spaced more widely: the op subsamples the axis, and
    the output layout is renormalised to the new spacing.
    """
    rank = len(in_layout)
    chosen = {d % rank for d in dims}
    effects = []
    out = list(out_layout)
    for axis in AXES:
        every = [f for dim in in_layout for f in dim if f.axis == axis]
        mixed = [f for d in sorted(chosen) for f in in_layout[d] if f.axis == axis]
        if not mixed:
            effects.append(Mixing())
            continue
        if len(mixed) == len(every):
            effects.append(Mixing(unbounded=True))
            continue
        span = sum((f.extent - 1) * f.stride for f in mixed) + 1
        stride, out = common_stride(out, axis)
        effects.append(Mixing(span=span, stride=stride))
    return (effects[0], effects[1]), tuple(out)
