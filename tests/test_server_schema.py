"""The shipped SDL accepts every operation of the official client (wandb 0.31.0) that `serve` answers."""

from __future__ import annotations

import pytest
from graphql import parse, validate

SUPPORTED = {
    "wandb.sdk.artifacts._generated.operations": [
        "ADD_ALIASES_GQL", "ARTIFACT_BY_ID_GQL", "ARTIFACT_COLLECTION_ALIASES_GQL", "ARTIFACT_CREATED_BY_GQL",
        "ARTIFACT_MEMBERSHIP_BY_NAME_GQL", "ARTIFACT_MEMBERSHIP_FILES_GQL", "ARTIFACT_TYPE_ARTIFACT_COLLECTIONS_GQL",
        "ARTIFACT_TYPE_GQL", "ARTIFACT_USED_BY_GQL", "DELETE_ALIASES_GQL", "DELETE_ARTIFACT_GQL",
        "FETCH_ARTIFACT_MANIFEST_GQL", "FETCH_LINKED_ARTIFACTS_GQL", "GET_ARTIFACT_MEMBERSHIP_FILE_URLS_GQL",
        "PROJECT_ARTIFACTS_GQL", "PROJECT_ARTIFACT_COLLECTIONS_GQL", "PROJECT_ARTIFACT_COLLECTION_GQL",
        "PROJECT_ARTIFACT_TYPES_GQL", "PROJECT_ARTIFACT_TYPE_GQL", "RUN_INPUT_ARTIFACTS_GQL",
        "RUN_OUTPUT_ARTIFACTS_GQL", "UPDATE_ARTIFACT_GQL",
    ],
    "wandb.apis._generated.operations": [
        "CREATE_PROJECT_GQL", "GET_DEFAULT_ENTITY_GQL", "GET_PROJECTS_GQL", "GET_PROJECT_GQL", "GET_SWEEPS_GQL",
        "GET_SWEEP_GQL", "GET_SWEEP_LEGACY_GQL", "GET_VIEWER_GQL", "IS_PROJECT_READ_ONLY_GQL",
    ],
}


@pytest.fixture(scope="module")
def schema():
    from wandb_mirror.server.schema import build_schema

    return build_schema()


@pytest.mark.parametrize(("module", "name"), [(m, n) for m, names in SUPPORTED.items() for n in names])
def test_client_operation_validates(schema, module: str, name: str) -> None:
    import importlib

    doc = getattr(importlib.import_module(module), name)
    assert validate(schema, parse(doc)) == []


def test_load_sdl_is_package_data() -> None:
    from wandb_mirror.server.schema import load_sdl

    sdl = load_sdl()
    assert "type Query" in sdl and "addAliases(input: AddAliasesInput!)" in sdl
