"""The private upstream names hwopt relies on (hwopt/upstream.py) are there and do what
hwopt needs: the installed versions lie within pyproject.toml's bounds; no other module reaches
into a library's private names; every rewrite rule's operator filter finds operators of its
pattern, and fails loudly when it cannot read the pattern; each rule reused from onnxscript
still rewrites a model made of its pattern.

Run this file first on a new onnxscript version before widening its bound (the upstream
module's docstring lists the rest)."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from importlib import metadata
from pathlib import Path

import onnx
import onnx_ir as ir
import pytest
from conftest import ROOT
from onnx import TensorProto, helper
from onnxscript.rewriter import RewriteRule
from packaging.requirements import Requirement
from packaging.version import Version
from passtest import make_model, run_pass

from hwopt import upstream
from hwopt.errors import UpstreamAPIChanged
from hwopt.passes.base import PassContext
from hwopt.passes.fold_batchnorm import FoldBatchNorm
from hwopt.passes.fold_pad import FoldPad
from hwopt.passes.fuse_activations import FuseActivations
from hwopt.passes.matmul_add_to_gemm import MatMulAddToGemm
from hwopt.passes.pipeline import APPLIED, ROLLED_BACK
from hwopt.passes.registry import all_passes
from hwopt.passes.remove_noops import RemoveNoOps
from hwopt.passes.rewrite import RewriteRulePass, applicable
from hwopt.passes.simplify_shape_ops import SimplifyShapeOps

if sys.version_info >= (3, 11):
    import tomllib
else:  # hwopt depends on tomli below 3.11
    import tomli as tomllib

# The libraries whose private names only hwopt/upstream.py may use.
UPSTREAM_PACKAGES = ("onnx", "onnx_ir", "onnxruntime", "onnxscript", "onnxsim")
# Private names used elsewhere, each with the reason it is not in the upstream module (none).
KNOWN_ELSEWHERE: set[tuple[str, str]] = set()


def _requirements() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {(r := Requirement(line)).name.lower(): r for line in project["dependencies"]}


@pytest.mark.parametrize("package", sorted(upstream.CHECKED_AGAINST))
def test_installed_version_is_within_pyproject_bounds(package: str) -> None:
    requirement = _requirements()[package]
    bounds = requirement.specifier
    assert any(spec.operator in ("<", "<=", "==", "~=") for spec in bounds), (
        f"pyproject.toml gives {package} no upper bound, but hwopt uses its private names"
    )
    checked = upstream.CHECKED_AGAINST[package]
    assert bounds.contains(checked, prereleases=True), (
        f"pyproject.toml allows {package}{bounds}, which leaves out {checked}, the version "
        "hwopt/upstream.py says it was checked against"
    )
    installed = metadata.version(package)
    assert bounds.contains(installed, prereleases=True), (
        f"{package} {installed} is installed, but pyproject.toml allows {package}{bounds} only: "
        "hwopt uses private names of it that other versions may not have. To widen the bound, "
        "follow hwopt/upstream.py's docstring on this version."
    )


def test_a_zero_major_package_is_bounded_below_its_next_minor() -> None:
    """0.x packages may break anything in a minor release: bound them below the next one."""
    for package, checked in upstream.CHECKED_AGAINST.items():
        version = Version(checked)
        if version.major == 0:
            assert not _requirements()[package].specifier.contains(f"0.{version.minor + 1}.0"), (
                f"{package} is 0.x: its bound must stop before 0.{version.minor + 1}"
            )


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _hwopt_sources() -> list[Path]:
    return sorted((ROOT / "hwopt").rglob("*.py"))


def _private_upstream_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
            names = [alias.name for alias in node.names]
            found += [f"{node.module}.{name}" for name in names if _private(name)
                      and node.module.split(".")[0] in UPSTREAM_PACKAGES]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        found += [m for m in modules if m.split(".")[0] in UPSTREAM_PACKAGES
                  and any(_private(part) for part in m.split("."))]
    return found


def _defined_private_names() -> set[str]:
    """Private names hwopt defines itself (functions, classes, attributes, module globals), not
    counting what the upstream module writes into upstream objects."""
    names: set[str] = set()
    for path in _hwopt_sources():
        if path.name == "upstream.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
    return {name for name in names if _private(name)}


def test_only_the_upstream_module_uses_private_upstream_names() -> None:
    """A private import of an upstream library, or a private attribute read off an object that
    is not hwopt's (``rule._target_pattern``), belongs in hwopt/upstream.py."""
    own = _defined_private_names()
    allowed_attributes = {"_exit"}  # os._exit: documented, for a forked child
    found = []
    for path in _hwopt_sources():
        where = path.relative_to(ROOT).as_posix()
        if where == "hwopt/upstream.py":
            continue
        tree = ast.parse(path.read_text())
        found += [(where, name) for name in _private_upstream_imports(tree)]
        found += [
            (where, f".{node.attr}")
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and _private(node.attr)
            and node.attr not in own and node.attr not in allowed_attributes
        ]
    unexpected = sorted(set(found) - KNOWN_ELSEWHERE)
    assert not unexpected, f"private upstream names outside hwopt/upstream.py: {unexpected}"
    stale = sorted(KNOWN_ELSEWHERE - set(found))
    assert not stale, f"KNOWN_ELSEWHERE lists uses that are gone: {stale}"


# --- The rule filter (hwopt.passes.rewrite.applicable) reads each rule's pattern -------------

# Opsets at which rule lists or their patterns change (Clip bounds, Squeeze axes, Pad inputs...).
OPSETS = (7, 9, 11, 12, 13, 18, 23)
# fuse_activations leaves out the rules whose ops a model lacks: a model with all of these
# gets all of its rules. (op: number of inputs)
TRIGGER_OPS = {"Min": 2, "Max": 2, "Relu": 1, "Clip": 1, "HardSigmoid": 1, "Erf": 1, "Tanh": 1, "Pow": 2}


def _model_with_trigger_ops(opset: int) -> ir.Model:
    nodes, outputs = [], []
    for op, arity in TRIGGER_OPS.items():
        try:
            onnx.defs.get_schema(op, opset)
        except onnx.defs.SchemaError:  # not in this opset yet (Erf is 9)
            continue
        nodes.append(helper.make_node(op, ["x"] * arity, [f"{op}_out"]))
        outputs.append(helper.make_tensor_value_info(f"{op}_out", TensorProto.FLOAT, [2, 3]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], outputs)
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _rules_in_use(pass_class: type[RewriteRulePass]) -> list[tuple[int, RewriteRule]]:
    return [
        (opset, rule)
        for opset in OPSETS
        if pass_class.min_opset <= opset <= pass_class.max_opset
        for rule in pass_class().rewrite_rules(_model_with_trigger_ops(opset), PassContext("cpu"))
    ]


def _pattern_ops(rule: RewriteRule) -> set[tuple[str, str]]:
    """Every operator of the rule's pattern, read independently of the upstream module."""
    return {(str(node.domain), str(node.op)) for node in rule._target_pattern}


REWRITE_PASSES = [cls for cls in all_passes() if issubclass(cls, RewriteRulePass)]


@pytest.mark.parametrize("pass_class", REWRITE_PASSES, ids=lambda cls: cls.name)
def test_every_rule_filter_finds_operators_of_its_pattern(pass_class: type[RewriteRulePass]) -> None:
    """The filter keeps a rule only where the model has its output nodes' operators; an empty
    set would keep it everywhere (what a missing private attribute used to do, silently)."""
    rules = _rules_in_use(pass_class)
    assert rules
    wrong = []
    for opset, rule in rules:
        ops = upstream.rule_output_ops(rule)
        if not ops or not ops <= _pattern_ops(rule):
            wrong.append(f"opset {opset} {rule.name}: filter {ops}, pattern {sorted(_pattern_ops(rule))}")
    assert not wrong, "\n".join(wrong)


def test_commuted_rules_are_filtered_by_the_same_operators() -> None:
    """RewriteRule.commute's copies (Add(c, MatMul) for Add(MatMul, c)) record no op identifier;
    the filter reads their operators all the same."""
    rules = MatMulAddToGemm().rewrite_rules(_model_with_trigger_ops(13), PassContext("cpu"))
    variants = [rule for rule in rules if rule.name == "FuseMatMulAdd"]
    assert len(variants) == 2
    assert [upstream.rule_output_ops(rule) for rule in variants] == [frozenset({("", "Add")})] * 2


def test_the_filter_fails_loudly_when_the_target_pattern_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    (rule, *_) = FoldBatchNorm().rewrite_rules(_model_with_trigger_ops(13), PassContext("cpu"))
    monkeypatch.delattr(rule, "_target_pattern")
    installed = re.escape(metadata.version("onnxscript"))
    with pytest.raises(UpstreamAPIChanged, match=rf"^onnxscript {installed} .*checked against onnxscript "):
        applicable([rule], _model_with_trigger_ops(13))


CONV_BN = """<ir_version: 8, opset_import: ["" : 13]>
g (float[2, 4, 8, 8] x) => (float[2, 6, 8, 8] y)
  <float[6, 4, 3, 3] w, float[6] s, float[6] b, float[6] mean, float[6] var> {
    c = Conv <pads = [1, 1, 1, 1]> (x, w)
    y = BatchNormalization (c, s, b, mean, var)
}"""


def test_a_renamed_target_pattern_rolls_the_pass_back_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if onnxscript renamed RewriteRule._target_pattern: the pass does not run unfiltered,
    and the report says why."""
    original = RewriteRule.__init__

    def renamed(self, *args, **kwargs) -> None:
        original(self, *args, **kwargs)
        self._renamed_pattern = self.__dict__.pop("_target_pattern")

    monkeypatch.setattr(RewriteRule, "__init__", renamed)
    record, _ = run_pass(FoldBatchNorm(), make_model(CONV_BN))
    assert record.status == ROLLED_BACK
    assert "UpstreamAPIChanged" in record.reason and "checked against onnxscript" in record.reason


def test_a_moved_rule_module_fails_the_import_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes importing that module fail, as if it had moved.
    monkeypatch.setitem(sys.modules, "onnxscript.rewriter.rules.common._fuse_batchnorm", None)
    spec = importlib.util.spec_from_file_location("upstream_copy", ROOT / "hwopt/upstream.py")
    with pytest.raises(UpstreamAPIChanged, match="moved or renamed a name hwopt imports .*_fuse_batchnorm"):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


# --- Each rule reused from onnxscript's private modules still rewrites a model with its pattern

H13 = '<ir_version: 8, opset_import: ["" : 13]>\n'
H10 = '<ir_version: 5, opset_import: ["" : 10]>\n'
BN6 = "float[6] s, float[6] b, float[6] mean, float[6] var"

# case: (pass, rule, model text). Each rewrite goes through the pass's rule filter first.
REUSED_RULES = {
    "bn_conv": (FoldBatchNorm, "FoldBatchNormIntoConv", H13 + CONV_BN.split("\n", 1)[1]),
    "bn_conv_transpose": (FoldBatchNorm, "FoldBatchNormIntoConvTranspose", H13 + f"""
        g (float[2, 4, 8, 8] x) => (float[2, 6, 16, 16] y) <float[4, 6, 2, 2] w, {BN6}> {{
            c = ConvTranspose <strides = [2, 2]> (x, w)
            y = BatchNormalization (c, s, b, mean, var)
        }}"""),
    "bn_gemm": (FoldBatchNorm, "FoldBatchNormIntoGemm", H13 + f"""
        g (float[2, 4] x) => (float[2, 6] y) <float[4, 6] w, float[6] gb, {BN6}> {{
            c = Gemm (x, w, gb)
            y = BatchNormalization (c, s, b, mean, var)
        }}"""),
    # Opset 10 keeps the pads in an attribute, which only hwopt's check reads: onnxscript's
    # rewrite must take them from set_conv_pad_pads.
    "pad_conv_opset10": (FoldPad, "FoldPadIntoConv", H10 + """
        g (float[2, 3, 8, 8] x) => (float[2, 4, 10, 10] y) <float[4, 3, 3, 3] w> {
            p = Pad <pads = [0, 0, 2, 2, 0, 0, 2, 2]> (x)
            y = Conv (p, w)
        }"""),
    "pad_conv_opset13": (FoldPad, "FoldPadIntoConv", H13 + """
        g (float[2, 3, 8, 8] x) => (float[2, 4, 10, 10] y) <float[4, 3, 3, 3] w, int64[8] pads = {0, 0, 2, 2, 0, 0, 2, 2}> {
            p = Pad (x, pads)
            y = Conv (p, w)
        }"""),
    "matmul_add": (MatMulAddToGemm, "FuseMatMulAdd", H13 + """
        g (float[2, 4] a) => (float[2, 6] y) <float[4, 6] b, float[6] c> {
            m = MatMul (a, b)
            y = Add (m, c)
        }"""),
    "matmul_add_commuted": (MatMulAddToGemm, "FuseMatMulAdd", H13 + """
        g (float[2, 4] a) => (float[2, 6] y) <float[4, 6] b, float[6] c> {
            m = MatMul (a, b)
            y = Add (c, m)
        }"""),
    "transpose_a_matmul_add": (MatMulAddToGemm, "FuseTransposeAMatMulAdd", H13 + """
        g (float[4, 2] a) => (float[2, 6] y) <float[4, 6] b, float[6] c> {
            t = Transpose <perm = [1, 0]> (a)
            m = MatMul (t, b)
            y = Add (m, c)
        }"""),
    "transpose_b_matmul_add": (MatMulAddToGemm, "FuseTransposeBMatMulAdd", H13 + """
        g (float[2, 4] a) => (float[2, 6] y) <float[6, 4] b, float[6] c> {
            t = Transpose <perm = [1, 0]> (b)
            m = MatMul (a, t)
            y = Add (m, c)
        }"""),
    "transpose_ab_matmul_add": (MatMulAddToGemm, "FuseTransposeABMatMulAdd", H13 + """
        g (float[4, 2] a) => (float[2, 6] y) <float[6, 4] b, float[6] c> {
            ta = Transpose <perm = [1, 0]> (a)
            tb = Transpose <perm = [1, 0]> (b)
            m = MatMul (ta, tb)
            y = Add (m, c)
        }"""),
    "identity_cast": (RemoveNoOps, "RemoveIdentityCast", H13 + """
        g (float[2, 3] x) => (float[2, 3] y) {
            c = Cast <to = 1> (x)
            y = Relu (c)
        }"""),
    "identity_transpose": (RemoveNoOps, "RemoveIdentityTranspose", H13 + """
        g (float[2, 3, 4] x) => (float[2, 3, 4] y) {
            t = Transpose <perm = [0, 1, 2]> (x)
            y = Relu (t)
        }"""),
    "transposes": (SimplifyShapeOps, "CollapseTransposes", H13 + """
        g (float[2, 4, 6] x) => (float[6, 2, 4] y) {
            a = Transpose <perm = [0, 2, 1]> (x)
            y = Transpose <perm = [1, 0, 2]> (a)
        }"""),
    "reshapes": (SimplifyShapeOps, "CollapseReshapes", H13 + """
        g (float[2, 4, 6] x) => (float[2, 6, 4] y) <int64[3] s1 = {2, 2, 12}, int64[3] s2 = {2, 6, 4}> {
            a = Reshape (x, s1)
            y = Reshape (a, s2)
        }"""),
    "flatten_reshape": (SimplifyShapeOps, "CollapseFlattenReshape", H13 + """
        g (float[2, 4, 6] x) => (float[2, 6, 4] y) <int64[3] s = {2, 6, 4}> {
            a = Flatten <axis = 1> (x)
            y = Reshape (a, s)
        }"""),
    "relus": (FuseActivations, "FuseSuccessiveRelu", H13 + """
        g (float[2, 3] x) => (float[2, 3] y) {
            a = Relu (x)
            y = Relu (a)
        }"""),
}


@pytest.mark.parametrize("case", REUSED_RULES, ids=str)
def test_each_reused_rule_rewrites_its_pattern(case: str) -> None:
    pass_class, rule_name, text = REUSED_RULES[case]
    record, _ = run_pass(pass_class(), make_model(text))
    assert record.status == APPLIED, record.reason
    assert record.rewrites.get(rule_name) == 1, record.rewrites


def test_collapsed_reshape_shape_gets_a_free_name() -> None:
    """onnxscript names the new shape '<output>/shape'; when that is taken, hwopt's check picks
    another name (reshape_shape_name, set_reshape_shape_name), which onnxscript's rewrite uses."""
    model = make_model(H13 + """
        g (float[2, 4, 6] x) => (float[2, 6, 4] y) <int64[3] s1 = {2, 2, 12}, int64[3] s2 = {2, 6, 4}, float[4] taken> {
            a = Reshape (x, s1)
            n = Reshape (a, s2)
            y = Add (n, taken)
        }""")
    (initializer,) = [i for i in model.graph.initializer if i.name == "taken"]
    initializer.name = "n/shape"
    model.graph.node[2].input[1] = "n/shape"
    onnx.checker.check_model(model, full_check=True)
    record, out = run_pass(SimplifyShapeOps(), model)
    assert record.status == APPLIED, record.reason
    assert record.rewrites.get("CollapseReshapes") == 1, record.rewrites
    (reshape,) = [node for node in out.graph.node if node.op_type == "Reshape"]
    assert reshape.input[1] not in ("n/shape", "s2")
    assert {i.name for i in out.graph.initializer} >= {"n/shape", reshape.input[1]}
