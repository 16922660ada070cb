"""The demo store's organization side, read by the official client as the demo fixture declares it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wandb_mirror.demo_data import ENTITY, demo_fixture
from wandb_mirror.fixtures import seed
from wandb_mirror.store import Store


def test_demo_registry_console_team_automations(tmp_path: Path, start_mirror_server: Any, make_wandb_api: Any) -> None:
    import wandb

    doc = demo_fixture()
    with Store(tmp_path / "demo") as store:
        seed(store, doc)
    server = start_mirror_server(tmp_path / "demo", read_only=True)
    make_wandb_api(server.url)
    api = wandb.Api(api_key="x" * 40, overrides={"base_url": server.url, "entity": ENTITY}, timeout=60)

    [reg] = doc["registries"]
    assert [r.name for r in api.registries()] == [reg["name"]]
    assert sorted(c.name for c in api.registry(reg["name"]).collections()) == sorted(c["name"] for c in reg["collections"])
    prod = api.artifact(f"wandb-registry-{reg['name']}/cifar-classifier:production")
    assert prod.source_name == "resnet-model:v1"
    prod.verify(prod.download(str(tmp_path / "prod")))

    vision = doc["projects"][0]
    running = next(r for r in vision["runs"] if r["state"] == "running" and "console" in r)
    lines = list(api.run(f"{ENTITY}/{vision['name']}/{running['id']}").console_logs())
    assert len(lines) == running["console"]["lines"]

    assert sorted(m.username for m in api.team(ENTITY).members) == sorted(
        m["username"] for m in doc["organization"]["teams"][ENTITY])
    assert sorted(a.name for a in api.automations(entity=ENTITY)) == sorted(a["name"] for a in doc["automations"])
    assert [w.name for w in api.webhook_integrations(entity=ENTITY)] == ["deploy-hook"]
