"""Passes made of pattern -> check -> rewrite rules, on the onnxscript rewriter.

A rule (``onnxscript.rewriter.RewriteRuleClassBase``) states a ``pattern`` of nodes, a
``check`` that returns ``MatchResult().fail("reason")`` when a match must not be rewritten,
and a ``rewrite`` that builds the replacement. A :class:`RewriteRulePass` applies its rules
until none fires (the rewriter also walks If/Loop/Scan bodies), counts each rule's rewrites,
removes the constants its rewrites left unused, and then asks the rewriter once more, with a
recording tracer and without changing anything, why the matches that are left were declined.
Those reasons are what ``--explain`` prints.

A check that finds a node is simply no candidate (a Cast that does convert, a Mul by 2)
returns :func:`not_applicable`: that is not a decline worth explaining.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import ClassVar

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass
from onnxscript.rewriter import (
    MatchingTracer,
    MatchResult,
    MatchStatus,
    RewriteRule,
    RewriteRuleSet,
)

from hwopt import upstream
from hwopt.passes.base import Declined, Pass, PassContext, PassResult

NOT_APPLICABLE = "not applicable"
# The matcher's reason when a match is blocked because an intermediate value has consumers
# outside the pattern: as useful to a user as a failed check.
_OTHER_USES = "other uses"


def not_applicable() -> MatchResult:
    """What a check returns for a node that is no candidate at all (never explained)."""
    return MatchResult().fail(NOT_APPLICABLE)


# A rule set rarely needs more than two rounds; the bound only stops a pair of rules that
# undo each other from looping forever.
MAX_ROUNDS = 8


class DeclineRecorder(MatchingTracer):
    """Collects, per node, the furthest any rule got before declining it.

    A failed ``check`` always counts; a pattern that stopped matching counts only when it got
    past its root node (otherwise every Mul in a model would be "declined" by a Mul rule).
    """

    def __init__(self) -> None:
        super().__init__()
        self._best: dict[int, tuple[int, Declined]] = {}

    def log(self, rule, container, node, match_result, status) -> None:
        matched = len(match_result.nodes)
        reason = match_result.reason or ""
        if reason == NOT_APPLICABLE:
            return
        if status == MatchStatus.CONDITION_FAILED or _OTHER_USES in reason:
            score = 1000 + matched
        elif status == MatchStatus.NO_MATCH and matched >= 2:
            score = matched
        else:
            return
        label = node.name or (node.outputs[0].name if node.outputs else "")
        declined = Declined(
            rule=rule.name or "rule",
            node=f"{node.op_type} '{label}'",
            reason=reason or "the rule's condition did not hold",
        )
        previous = self._best.get(id(node))
        if previous is None or score > previous[0]:
            self._best[id(node)] = (score, declined)

    @property
    def declined(self) -> list[Declined]:
        return [entry for _, entry in self._best.values()]


class RewriteRulePass(Pass):
    """Base for passes whose work is a list of rewrite rules."""

    # Rules that read ranks or static dims of intermediate values need them annotated, which
    # exported models often do not do. Non-strict: a node inference cannot handle (a custom
    # op) leaves its outputs unannotated instead of failing.
    needs_shapes: ClassVar[bool] = False

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        """The rules to apply, which may depend on the model's opset."""
        raise NotImplementedError

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        if self.needs_shapes:
            ShapeInferencePass(strict_mode=False, data_prop=False)(model)
        rules = list(self.rewrite_rules(model, ctx))
        result = PassResult(model)
        if not rules:
            return result
        unused_before = set(unused_constants(model))
        counts: collections.Counter[str] = collections.Counter()
        for _ in range(MAX_ROUNDS):
            fired = 0
            for rule in applicable(rules, model):
                n = RewriteRuleSet([rule]).apply_to_model(model)
                counts[rule.name or "rule"] += n
                fired += n
            if not fired:
                break
        result.rewrites.update({name: n for name, n in counts.items() if n})
        if result.changed:
            _remove_constants(model, [c for c in unused_constants(model) if c not in unused_before])
        recorder = DeclineRecorder()
        candidates = applicable(rules, model)
        if candidates:
            RewriteRuleSet(candidates).apply_to_model(model, tracer=recorder)
        result.declined = recorder.declined
        return result


def applicable(rules: Sequence[RewriteRule], model: ir.Model) -> list[RewriteRule]:
    """The rules whose pattern's output operators occur in the model. The rewriter tries
    every rule at every node; on a 10,000-node graph, skipping the rules that cannot match is
    the difference between seconds and minutes."""
    present = {(_domain(node.domain), node.op_type) for graph in model.graphs() for node in graph}
    return [rule for rule in rules if _required_ops(rule) <= present]


def _required_ops(rule: RewriteRule) -> set[tuple[str, str]]:
    """The operators of the pattern's output nodes, which every match contains. (Inner nodes
    may be alternatives of an OrValue, so they are not all required.) A rule whose output node
    is not one fixed operator requires nothing, and is kept. The pattern is not public API:
    hwopt.upstream reads it, and raises when it cannot."""
    ops = upstream.rule_output_ops(rule)
    return set() if ops is None else {(_domain(domain), op_type) for domain, op_type in ops}


def _domain(domain: str) -> str:
    return "" if domain in ("", "ai.onnx") else domain


def unused_constants(model: ir.Model) -> list[tuple[ir.Graph, ir.Node | ir.Value]]:
    """Constant nodes and initializers that nothing reads, with the graph that holds each."""

    def unused(value: ir.Value) -> bool:
        return not value.uses() and not value.is_graph_output() and not value.is_graph_input()

    found: list[tuple[ir.Graph, ir.Node | ir.Value]] = []
    for graph in model.graphs():
        found += [(graph, n) for n in graph if n.op_type == "Constant" and unused(n.outputs[0])]
        found += [(graph, v) for v in graph.initializers.values() if unused(v)]
    return found


def _remove_constants(model: ir.Model, leftovers: list[tuple[ir.Graph, ir.Node | ir.Value]]) -> None:
    """Drop the weights and constants a pass's rewrites replaced. Constants that were unused
    before the pass stay: removing dead code is eliminate_dead_code's job, not this pass's."""
    for graph, item in leftovers:
        if isinstance(item, ir.Node):
            graph.remove(item, safe=True)
        else:
            del graph.initializers[item.name]
