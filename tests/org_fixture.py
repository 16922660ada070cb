"""The server fixture grown with the organization side: the single source the org tests assert against."""

from __future__ import annotations

from typing import Any

from conftest import ENTITY, PROJECT, server_fixture_doc

ORG = "acme-org"
ORG_ENTITY = "acme-org-entity"
CONSOLE = [{"line": "epoch 1", "timestamp": "2024-03-01T00:00:01.250000"},
           {"line": "Traceback: boom", "timestamp": "2024-03-01T00:00:02", "level": "error"},
           {"line": "épocha 3 ✓", "timestamp": "2024-03-01T00:00:03"}]


def org_fixture_doc() -> dict[str, Any]:
    doc = server_fixture_doc()
    runs = doc["projects"][0]["runs"]
    runs[0]["console"] = CONSOLE
    runs[3]["console"] = {"lines": 2500, "seed": 4}  # r04 is running
    doc["organization"] = {"name": ORG, "entity": ORG_ENTITY, "teams": {ENTITY: [
        {"username": "ada", "name": "Ada", "email": "ada@example.com", "role": "admin"},
        {"username": "grace", "name": "Grace"},
        {"username": "alan", "role": "viewer", "pending": True}]}}
    doc["registries"] = [
        {"name": "model", "description": "production models", "artifact_types": ["model", "dataset"],
         "created_at": "2024-04-01T00:00:00", "collections": [
             {"name": "yolo-detector", "type": "dataset", "description": "detector", "tags": ["vision"],
              "versions": [{"artifact": f"{ENTITY}/{PROJECT}/mnist:v0", "aliases": ["staging"]},
                           {"artifact": f"{ENTITY}/{PROJECT}/mnist:v1", "aliases": ["production"]}]},
             {"name": "cnn-classifier", "type": "model",
              "versions": [{"artifact": f"{ENTITY}/{PROJECT}/cnn:v0", "aliases": ["candidate"]}]}]},
        {"name": "datasets", "visibility": "restricted", "created_at": "2024-04-02T00:00:00"},
    ]
    doc["integrations"] = [{"kind": "webhook", "name": "deploy-hook", "url": "https://ci.example.com/hook"},
                           {"kind": "slack", "team": "acme-slack", "channel": "#ml-alerts"}]
    doc["automations"] = [
        {"name": "deploy", "description": "deploy production", "scope": {"registry_collection": "model/yolo-detector"},
         "event": {"type": "ADD_ARTIFACT_ALIAS", "filter": {"filter": {"$or": [{"$and": [{"alias": {"$regex": "production"}}]}]}}},
         "action": {"webhook": "deploy-hook", "payload": {"v": "${artifact_version}"}}},
        {"name": "notify-new", "enabled": False, "scope": {"project": PROJECT}, "event": {"type": "CREATE_ARTIFACT"},
         "action": {"slack": "#ml-alerts", "title": "new artifact", "message": "logged", "severity": "WARN"}},
    ]
    return doc


def seed_org_store(path: Any) -> Any:
    from wandb_mirror.fixtures import seed
    from wandb_mirror.store import Store

    store = Store(path)
    try:
        seed(store, org_fixture_doc())
    finally:
        store.close()
    return path
