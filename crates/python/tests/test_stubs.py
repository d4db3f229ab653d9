"""The .pyi stubs describe the extension as built: every public function and Model method has a
stub with the same parameter names and defaults (from the compiled `__text_signature__`), and
every stubbed function exists."""

import ast
import inspect
import pathlib

import pytest

import dltlab

STUBS = pathlib.Path(__file__).resolve().parents[1] / "python" / "dltlab"
MODULES = ["theory", "scaling", "collapse", "prune", "data", "studies"]


def stub_functions(tree):
    """name → [(param, default source or None)] for top-level defs and Model's methods."""
    out = {}

    def params(f):
        a = f.args
        names = [x.arg for x in a.args]
        defaults = [None] * (len(names) - len(a.defaults)) + [ast.unparse(d) for d in a.defaults]
        return [(n, d) for n, d in zip(names, defaults) if n != "self"]

    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out[node.name] = params(node)
        elif isinstance(node, ast.ClassDef) and node.name == "Model":
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and not any(
                        isinstance(d, ast.Name) and d.id == "property" for d in f.decorator_list):
                    out[f"Model.{f.name}"] = params(f)
    return out


def compiled(obj):
    sig = inspect.signature(obj)
    return [(p.name, None if p.default is inspect.Parameter.empty else repr(p.default))
            for p in sig.parameters.values() if p.name not in ("self", "$self")]


@pytest.mark.parametrize("name", MODULES)
def test_stub_matches_extension(name):
    mod = getattr(dltlab, name)
    stubs = stub_functions(ast.parse((STUBS / f"{name}.pyi").read_text(encoding="utf-8")))
    public = {k for k in dir(mod) if not k.startswith("_") and callable(getattr(mod, k))
              and not isinstance(getattr(mod, k), type)}
    if hasattr(mod, "Model"):
        public |= {f"Model.{k}" for k in dir(mod.Model)
                   if not k.startswith("_") and callable(getattr(mod.Model, k))}
    assert public == set(stubs), (public ^ set(stubs))
    for k, want in stubs.items():
        obj = mod
        for part in k.split("."):
            obj = getattr(obj, part)
        got = compiled(obj)
        # Defaults compare as Python literals (the stub may write 1e-3 where repr gives 0.001).
        norm = lambda xs: [(n, None if d is None else ast.literal_eval(d)) for n, d in xs]
        assert norm(got) == norm(want), k
