"""The invariants every rewrite keeps, checked after each step; a violation stops the run.

1. The new model runs forward at the target size and gives the expected output shape; it also runs in
   training mode if the input model did (auxiliary heads, dropout paths).
2. Every kept layer's parameters and buffers equal the original's, bit for bit.
3. For truncation: the kept prefix produces the same activation at the cut as the original model.
4. The input model is unchanged (state and structure before and after).
5. No dead modules: every parameter of the new model contributes to its output, unless it was already
   idle in the input model (auxiliary heads used only in training). A module that still runs but whose
   result nothing reads (a removed block kept alive by an assert on its shape) is dead too.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._errors import RewriteError
from .._text import one_line
from ..analysis.fx_tracer import ModuleUse
from ..analysis.modes import eval_mode
from .plan import Cut, Plan
from .surgery import extract_prefix


@dataclass(frozen=True)
class Snapshot:
    """A model's state, structure and training flags, to check later that nothing changed."""

    state: dict[str, torch.Tensor]
    structure: str
    flags: tuple[bool, ...]


def snapshot(model: nn.Module) -> Snapshot:
    return Snapshot(
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        structure=repr(model),
        flags=tuple(m.training for m in model.modules()),
    )


def check_unchanged(model: nn.Module, before: Snapshot) -> None:
    """Invariant 4."""
    state = model.state_dict()
    changed = [k for k in before.state if k not in state or not torch.equal(before.state[k], state[k])]
    problems = []
    if changed or set(state) != set(before.state):
        problems.append(f"tensors changed: {', '.join(changed[:5]) or 'keys added or removed'}")
    if repr(model) != before.structure:
        problems.append("its structure changed")
    if tuple(m.training for m in model.modules()) != before.flags:
        problems.append("its training flags changed")
    if problems:
        raise RewriteError("invariant 4 broken, the input model was modified: " + "; ".join(problems))


def _example(model: nn.Module, input_size: tuple[int, int], in_channels: int) -> torch.Tensor:
    param = next(model.parameters(), None)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, in_channels, *input_size, generator=generator)
    return x if param is None else x.to(param)  # the model's device and (floating) dtype


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return model(x)


def check_step(
    old: nn.Module,
    new: nn.Module,
    plan: Plan,
    *,
    input_size: tuple[int, int],
    in_channels: int = 3,
    leaf_classes: Sequence[type] = (),
) -> None:
    """Invariants 1-3 for one step that turned ``old`` into ``new`` following ``plan``."""
    x = _example(old, input_size, in_channels)
    h, w = input_size
    try:
        out = _forward(new, x)
    except Exception as err:
        reason = one_line(err)
        raise RewriteError(f"invariant 1 broken, the new model does not run at {h}x{w}: {reason}") from err
    expected = _expected_shape(old, x, plan)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RewriteError(f"invariant 1 broken, the new model returns {got} at {h}x{w}, expected {expected}")
    _check_training_forward(old, new, x, f"{h}x{w}")
    _check_kept_tensors(old, new, plan)
    if plan.cut is not None:
        _check_prefix(old, new, plan.cut, x, leaf_classes)


def idle_parameters(
    model: nn.Module,
    use: ModuleUse,
    *,
    input_size: tuple[int, int] | None = None,
    in_channels: int = 3,
) -> set[str]:
    """Parameters of ``model`` that its output does not depend on, read from ``use`` (what its trace in eval
    mode calls and reads, as the analysis made it: ``LayerGraph.module_use``).

    A parameter is used when its module is called by a node the output depends on, or it is read directly.
    A module the trace calls only for checks (or for nothing) is dead code. A module the trace never calls
    may still run by control flow fx does not see (a router choosing which blocks run): with
    ``input_size``, one eval forward with hooks tells; a module that does not run then is idle.
    """
    called, traced_calls, read = use.live_calls, use.called, use.live_reads

    def inside(owner: str, paths: set[str]) -> bool:
        return any(owner == c or owner.startswith(c + ".") for c in paths)

    idle, unseen = set(), {}
    for name, _ in model.named_parameters():
        owner = name.rpartition(".")[0]
        if name in read or inside(owner, called):
            continue
        if inside(owner, traced_calls) or input_size is None:
            idle.add(name)
        else:
            unseen[name] = owner
    return idle | {
        name
        for name, owner in unseen.items()
        if owner not in _run_modules(model, set(unseen.values()), input_size, in_channels)
    }


def _run_modules(
    model: nn.Module, paths: set[str], input_size: tuple[int, int], in_channels: int
) -> set[str]:
    """Which of the modules at ``paths`` run in one eval forward of ``model``."""
    ran: set[str] = set()
    handles = [
        model.get_submodule(path).register_forward_hook(lambda *_, path=path: ran.add(path))
        for path in paths
        if path
    ]
    try:
        _forward(model, _example(model, input_size, in_channels)[:1])
    except Exception:
        return set(paths)  # it does not run at all: invariant 1 says so; nothing is blamed on idleness here
    finally:
        for handle in handles:
            handle.remove()
    return ran | ({""} if "" in paths else set())


def check_no_dead_modules(
    new: nn.Module,
    use: ModuleUse,
    idle_before: set[str],
    plan: Plan,
    *,
    input_size: tuple[int, int] | None = None,
    in_channels: int = 3,
) -> None:
    """Invariant 5: the rewrite left no module behind that no longer contributes to the output.

    ``use`` is what the new model's trace calls and reads; ``idle_before`` the parameters of the input model
    that were idle already (auxiliary heads used only in training), by their names in the input model.
    """
    idle = idle_parameters(new, use, input_size=input_size, in_channels=in_channels)
    dead = sorted(name for name in idle if plan.old_key(name) not in idle_before)
    if dead:
        modules = sorted({name.rpartition(".")[0] for name in dead})
        count = sum(p.numel() for name, p in new.named_parameters() if name in dead)
        raise RewriteError(
            f"invariant 5 broken, the new model keeps {len(modules)} dead module(s) that no longer contribute "
            f"to its output ({count} parameters): {', '.join(modules[:4])}{', ...' if len(modules) > 4 else ''}"
        )


def _runs_in_training(model: nn.Module, x: torch.Tensor) -> Exception | None:
    """Run a copy in training mode (batch norm statistics of the model itself stay untouched)."""
    trial = copy.deepcopy(model).train()
    try:
        with torch.no_grad():
            trial(x)
    except Exception as err:  # any failure is reported with its reason
        return err
    return None


def _check_training_forward(old: nn.Module, new: nn.Module, x: torch.Tensor, size: str) -> None:
    err = _runs_in_training(new, x)
    if err is not None and _runs_in_training(old, x) is None:
        reason = one_line(err)
        raise RewriteError(
            f"invariant 1 broken, the new model does not run in training mode at {size}: {reason}"
        )


def _expected_shape(old: nn.Module, x: torch.Tensor, plan: Plan) -> tuple[int, ...]:
    if plan.num_classes is not None:
        return (x.shape[0], plan.num_classes)
    return tuple(_forward(old, x).shape)


def _check_kept_tensors(old: nn.Module, new: nn.Module, plan: Plan) -> None:
    """Invariant 2: every tensor of the new model is either declared new by the plan or kept bit for bit."""
    old_state = old.state_dict()
    for key, tensor in new.state_dict().items():
        if plan.is_new(key):
            continue
        old_key = plan.old_key(key)
        if old_key not in old_state:
            raise RewriteError(
                f"invariant 2 broken: '{key}' is neither a tensor of the input model nor declared new by the plan"
            )
        kept = old_state[old_key]
        if kept.shape != tensor.shape or kept.dtype != tensor.dtype or not torch.equal(kept, tensor):
            raise RewriteError(
                f"invariant 2 broken: kept tensor '{key}' differs from the input model's '{old_key}'"
            )


def _check_prefix(
    old: nn.Module, new: nn.Module, cut: Cut, x: torch.Tensor, leaf_classes: Sequence[type]
) -> None:
    """Invariant 3: the new model's kept prefix computes the original model's activation at the cut."""
    reference = extract_prefix(copy.deepcopy(old), cut.at, leaf_classes=leaf_classes)
    expected = _forward(reference, x)
    got = _forward(new.get_submodule(cut.prefix_module), x)
    if expected.shape != got.shape or not torch.equal(expected, got):
        raise RewriteError(
            f"invariant 3 broken: the kept prefix does not reproduce the activation at '{cut.at}'"
        )
