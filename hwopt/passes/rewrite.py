"""Passes made of pattern -> check -> rewrite rules, on the onnxscript rewriter.

A rule (``onnxscript.rewriter.RewriteRuleClassBase``) states a ``pattern`` of nodes, a
``check`` that returns ``MatchResult().fail("reason")`` when a match must not be rewritten,
and a ``rewrite`` that builds the replacement. A :class:`RewriteRulePass` applies its rules
until none fires (the rewriter also walks If/Loop/Scan bodies), counts each rule's rewrites,
and then asks the rewriter once more, with a recording tracer and without changing anything,
why the matches that are left were declined. Those reasons are what ``--explain`` prints.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence

import onnx_ir as ir
from onnxscript.rewriter import MatchingTracer, MatchStatus, RewriteRule, RewriteRuleSet

from hwopt.passes.base import Declined, Pass, PassContext, PassResult

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
        if status == MatchStatus.CONDITION_FAILED:
            score = 1000 + matched
        elif status == MatchStatus.NO_MATCH and matched >= 2:
            score = matched
        else:
            return
        label = node.name or (node.outputs[0].name if node.outputs else "")
        declined = Declined(
            rule=rule.name or "rule",
            node=f"{node.op_type} '{label}'",
            reason=match_result.reason or "the rule's condition did not hold",
        )
        previous = self._best.get(id(node))
        if previous is None or score > previous[0]:
            self._best[id(node)] = (score, declined)

    @property
    def declined(self) -> list[Declined]:
        return [entry for _, entry in self._best.values()]


class RewriteRulePass(Pass):
    """Base for passes whose work is a list of rewrite rules."""

    def rewrite_rules(self, model: ir.Model, ctx: PassContext) -> Sequence[RewriteRule]:
        """The rules to apply, which may depend on the model's opset."""
        raise NotImplementedError

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        rules = list(self.rewrite_rules(model, ctx))
        result = PassResult(model)
        if not rules:
            return result
        counts: collections.Counter[str] = collections.Counter()
        for _ in range(MAX_ROUNDS):
            fired = 0
            for rule in rules:
                n = RewriteRuleSet([rule]).apply_to_model(model)
                counts[rule.name or "rule"] += n
                fired += n
            if not fired:
                break
        result.rewrites.update({name: n for name, n in counts.items() if n})
        recorder = DeclineRecorder()
        RewriteRuleSet(rules).apply_to_model(model, tracer=recorder)
        result.declined = recorder.declined
        return result
