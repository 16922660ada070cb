"""The change kinds as typed events: one class per kind, its payload, and its hook's arguments."""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import pytest
from test_plugins_support import ENTITY, PROJECT, seed_store

from wandb_mirror import events
from wandb_mirror.hooks import StoreView, specs
from wandb_mirror.hooks.types import FieldChange
from wandb_mirror.store import Store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    path = seed_store(tmp_path_factory.mktemp("events") / "seed")
    copy = path.parent / "copy"
    shutil.copytree(path, copy)
    s = Store(copy)
    yield s
    s.close()


def one_of_each(store: Store) -> list[events.Event]:
    art = store.catalog.scalar("SELECT id FROM artifacts ORDER BY pk LIMIT 1")
    scope = {"entity": ENTITY, "project": PROJECT}
    return [
        events.RunCreated(**scope, run="a1", state="running", display_name="a1", created_at="2024-01-01T00:00:00"),
        events.RunStateChanged(**scope, run="a1", old="running", new="finished"),
        events.RunUpdated(**scope, run="a1", changes={"tags": {"before": "[]", "after": '["keep"]'}}),
        events.HistoryAppended(**scope, run="a1", first_step=0, last_step=2, rows=3),
        events.FileMirrored(**scope, run="a1", name="plot.png", md5="0" * 32, size=1, changed=False),
        events.ArtifactVersionMirrored(**scope, run="a1", artifact_id=art, collection="weights", type_name="model",
                                       version_index=0, digest="d", aliases=["latest"], size=1, file_count=1),
        events.ArtifactAliasesChanged(**scope, artifact_id=art, collection="weights", version_index=0, added=["best"],
                                      removed=[], aliases=["best", "latest"]),
        events.SweepUpdated(**scope, name="sw", state="RUNNING", changes={}),
        events.SweepFinished(**scope, name="sw", state="FINISHED", best_loss=0.1),
        events.Tombstoned(**scope, run="b1", what="run", key=f"{ENTITY}/{PROJECT}/b1"),
        events.ArtifactLinked(entity="org", project="wandb-registry-model", artifact_id=art, registry="model",
                              collection="prod-models", version_index=0, aliases=["production"]),
        events.ArtifactUnlinked(entity="org", project="wandb-registry-model", artifact_id=art, registry="model",
                                collection="prod-models", version_index=0, aliases=[]),
        events.RegistryAliasesChanged(entity="org", project="wandb-registry-model", artifact_id=art, registry="model",
                                      collection="prod-models", version_index=0, added=["production"], removed=[]),
        events.ConsoleAppended(**scope, run="a1", first_line=0, last_line=9),
        events.AutomationChanged(entity=ENTITY, project="", automation_id="VHJpZ2dlcjox", name="deploy",
                                 changes={"enabled": {"before": 1, "after": 0}},
                                 automation={"id": "VHJpZ2dlcjox", "name": "deploy", "enabled": False,
                                             "scope": {"typename": "Project", "id": "p", "name": PROJECT}}),
    ]


def as_row(e: events.Event) -> dict:
    return {"kind": e.kind, "entity": e.entity, "project": e.project, "run": e.run, "subject": e.subject,
            "payload": json.dumps(e.payload())}


def test_one_class_per_kind_each_with_its_hookspec(store: Store) -> None:
    built = one_of_each(store)
    assert sorted(e.kind for e in built) == sorted(events.KINDS)
    view = StoreView(store)
    for e in built:
        spec = getattr(specs, e.hook)
        params = list(inspect.signature(spec).parameters)
        args = e.hook_args(view)
        assert params == [*args, *specs.CONTEXT_ARGS], e.kind


def test_rows_read_back_as_the_event_written(store: Store) -> None:
    for e in one_of_each(store):
        assert events.event_from_row(as_row(e)) == e


def test_payload_keys_are_the_stored_ones(store: Store) -> None:
    built = {e.kind: e for e in one_of_each(store)}
    assert set(built["artifact_version_mirrored"].payload()) == {
        "id", "collection", "type", "version_index", "digest", "aliases", "size", "file_count"}
    assert built["tombstoned"].payload() == {"kind": "run", "key": f"{ENTITY}/{PROJECT}/b1"}
    assert built["file_mirrored"].subject == "plot.png"


def test_hook_arguments_from_rows_of_older_writers(store: Store) -> None:
    view = StoreView(store)
    art = store.catalog.scalar("SELECT id FROM artifacts ORDER BY pk LIMIT 1")
    # the subject only in the `subject` column; the artifact as "collection:vN"
    old = events.event_from_row({"kind": "artifact_aliases_changed", "entity": ENTITY, "project": PROJECT,
                                 "run": None, "subject": "weights:v0", "payload": "{}"})
    assert old is not None
    assert old.hook_args(view)["artifact"].id == art
    updated = events.event_from_row({"kind": "run_updated", "entity": ENTITY, "project": PROJECT, "run": "a1",
                                     "subject": None, "payload": '{"changes": {"tags": {"before": "[]", '
                                                                 '"after": "[\\"keep\\"]"}}}'})
    assert updated is not None
    assert updated.hook_args(view)["changes"] == {"tags": FieldChange([], ["keep"])}
    assert events.event_from_row({"kind": "no_such_kind", "payload": "{}"}) is None


def test_a_vanished_subject_is_a_lookup_error(store: Store) -> None:
    gone = events.RunCreated(entity=ENTITY, project=PROJECT, run="no-such-run")
    with pytest.raises(LookupError, match="no-such-run"):
        gone.hook_args(StoreView(store))


def test_delivery_holds_no_per_kind_code() -> None:
    src = (Path(events.__file__).parent / "hooks" / "delivery.py").read_text()
    for kind in events.KINDS:
        assert f'"{kind}"' not in src
