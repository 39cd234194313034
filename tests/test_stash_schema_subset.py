"""The emulator's SDL must be a faithful subset of Stash's real schema.

Every named type, field, argument, input field, enum value, union member and
implemented interface declared in tests/emulators/stash_schema.graphql must
exist in Stash's schema (../shared/stash-schema) with the same kind and the
same type string (nullability and list wrappers included), the same default
values and the same deprecation. Input types and field arguments may leave out
only what Stash treats as optional.
"""

from pathlib import Path
from typing import List

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLUnionType,
    Undefined,
    assert_valid_schema,
    build_schema,
)

HERE = Path(__file__).resolve().parent
SUBSET_SDL = HERE / "emulators" / "stash_schema.graphql"
REAL_SCHEMA_DIR = Path(__file__).resolve().parents[2] / "shared" / "stash-schema"


def load_real_sdl(schema_dir: Path) -> str:
    files = [schema_dir / "schema.graphql"] + sorted((schema_dir / "types").glob("*.graphql"))
    return "\n".join(f.read_text(encoding="utf-8") for f in files)


def _kind(t) -> str:
    for cls, name in ((GraphQLObjectType, "OBJECT"), (GraphQLInterfaceType, "INTERFACE"),
                      (GraphQLInputObjectType, "INPUT_OBJECT"), (GraphQLEnumType, "ENUM"),
                      (GraphQLUnionType, "UNION"), (GraphQLScalarType, "SCALAR")):
        if isinstance(t, cls):
            return name
    return type(t).__name__


def _required(value) -> bool:
    """An argument / input field the caller must supply."""
    return isinstance(value.type, GraphQLNonNull) and value.default_value is Undefined


def _compare_one(label: str, sub, real, errors: List[str]) -> None:
    """The type and deprecation of one field or argument against Stash's."""
    if str(sub.type) != str(real.type):
        errors.append(f"{label} is {sub.type} here but {real.type} in Stash")
    if sub.deprecation_reason != real.deprecation_reason:
        errors.append(f"{label} deprecation {sub.deprecation_reason!r} != Stash {real.deprecation_reason!r}")


def _compare_values(where: str, sub_map, real_map, errors: List[str], what: str) -> None:
    for name, sub in sub_map.items():
        real = real_map.get(name)
        if real is None:
            errors.append(f"{where}: {what} {name!r} does not exist in Stash")
            continue
        _compare_one(f"{where}: {what} {name!r}", sub, real, errors)
        if sub.default_value != real.default_value:
            errors.append(f"{where}: {what} {name!r} default {sub.default_value!r} != Stash {real.default_value!r}")
    for name, real in real_map.items():
        if name not in sub_map and _required(real):
            errors.append(f"{where}: required {what} {name!r} ({real.type}) is missing")


def subset_errors(sub: GraphQLSchema, real: GraphQLSchema) -> List[str]:
    """Every way ``sub`` is not a faithful subset of ``real`` (empty = subset)."""
    errors: List[str] = []
    for root in ("query_type", "mutation_type", "subscription_type"):
        s, r = getattr(sub, root), getattr(real, root)
        if s is not None and (r is None or s.name != r.name):
            errors.append(f"root {root}: {s.name} is not Stash's {r.name if r else None}")
    for name, st in sub.type_map.items():
        if name.startswith("__"):
            continue
        rt = real.type_map.get(name)
        if rt is None:
            errors.append(f"type {name!r} does not exist in Stash")
            continue
        if _kind(st) != _kind(rt):
            errors.append(f"type {name!r} is {_kind(st)} here but {_kind(rt)} in Stash")
            continue
        if isinstance(st, (GraphQLObjectType, GraphQLInterfaceType)):
            real_ifaces = {i.name for i in rt.interfaces}
            for iface in st.interfaces:
                if iface.name not in real_ifaces:
                    errors.append(f"type {name!r} implements {iface.name} here but not in Stash")
            for fname, sf in st.fields.items():
                rf = rt.fields.get(fname)
                if rf is None:
                    errors.append(f"{name}.{fname} does not exist in Stash")
                    continue
                _compare_one(f"{name}.{fname}", sf, rf, errors)
                _compare_values(f"{name}.{fname}", sf.args, rf.args, errors, "argument")
        elif isinstance(st, GraphQLInputObjectType):
            _compare_values(name, st.fields, rt.fields, errors, "input field")
        elif isinstance(st, GraphQLEnumType):
            for vname, sv in st.values.items():
                rv = rt.values.get(vname)
                if rv is None:
                    errors.append(f"enum {name}.{vname} does not exist in Stash")
                elif sv.deprecation_reason != rv.deprecation_reason:
                    errors.append(f"enum {name}.{vname} deprecation differs from Stash")
        elif isinstance(st, GraphQLUnionType):
            real_members = {t.name for t in rt.types}
            for member in st.types:
                if member.name not in real_members:
                    errors.append(f"union {name} member {member.name} is not in Stash")
    real_directives = {d.name for d in real.directives}
    for directive in sub.directives:
        if directive.name not in real_directives:
            errors.append(f"directive @{directive.name} does not exist in Stash")
    return errors


@pytest.fixture(scope="module")
def real_schema() -> GraphQLSchema:
    if not (REAL_SCHEMA_DIR / "schema.graphql").is_file():
        pytest.skip(f"Stash's schema is not available at {REAL_SCHEMA_DIR} "
                    "(it lives in the shared workspace next to the repository)")
    schema = build_schema(load_real_sdl(REAL_SCHEMA_DIR))
    assert_valid_schema(schema)
    return schema


@pytest.fixture(scope="module")
def subset_schema() -> GraphQLSchema:
    schema = build_schema(SUBSET_SDL.read_text(encoding="utf-8"))
    assert_valid_schema(schema)
    return schema


def test_emulator_schema_is_a_subset_of_stash(subset_schema, real_schema):
    errors = subset_errors(subset_schema, real_schema)
    assert errors == [], "\n".join(errors)


def test_subset_covers_what_plexsync_needs(subset_schema):
    query = subset_schema.query_type
    assert {"version", "configuration", "findScene", "findScenes"} <= set(query.fields)
    assert list(query.fields["findScenes"].args) == ["scene_filter", "scene_ids", "ids", "filter"]
    assert "include" in subset_schema.type_map["ConfigResult"].fields["plugins"].args
    scene = subset_schema.type_map["Scene"].fields
    for field in ("id", "title", "details", "date", "rating100", "urls", "organized", "updated_at",
                  "studio", "performers", "tags", "files", "paths"):
        assert field in scene, field
    assert "updated_at" in subset_schema.type_map["SceneFilterType"].fields
    assert "configurePlugin" in subset_schema.mutation_type.fields


def _mutated(sdl: str, old: str, new: str) -> GraphQLSchema:
    assert old in sdl, old
    return build_schema(sdl.replace(old, new, 1))


@pytest.mark.parametrize("old,new,expected", [
    ("  rating100: Int\n  organized: Boolean!", "  rating100: Int!\n  organized: Boolean!", "Scene.rating100 is Int!"),
    ("  urls: [String!]!\n  date: String", "  urls: [String]!\n  date: String", "Scene.urls is [String]!"),
    ("  paths: ScenePathsType!\n", "  paths: ScenePathsType!\n  thumbnail: String\n", "Scene.thumbnail does not exist"),
    ("  NOT_BETWEEN\n}", "  NOT_BETWEEN\n  AFTER\n}", "CriterionModifier.AFTER does not exist"),
    ("    ids: [ID!]\n", "    ids: [Int!]\n", "argument 'ids' is [Int!]"),
    ("  value: String!\n  value2: String\n  modifier: CriterionModifier!\n}\n\ninput SceneFilterType",
     "  value2: String\n  modifier: CriterionModifier!\n}\n\ninput SceneFilterType",
     "required input field 'value'"),
    ("scalar Int64\n", "scalar Int64\nscalar Duration\n", "type 'Duration' does not exist"),
    ('scene_ids: [Int!] @deprecated(reason: "use ids")', "scene_ids: [Int!]", "deprecation"),
])
def test_checker_catches_a_non_subset(subset_schema, real_schema, old, new, expected):
    """The comparison itself must be able to fail."""
    sdl = SUBSET_SDL.read_text(encoding="utf-8")
    errors = subset_errors(_mutated(sdl, old, new), real_schema)
    assert any(expected in e for e in errors), errors
