"""Fixture loading: validation names the path, writes nothing on error; seeding is reproducible."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_mirror import ids
from wandb_mirror.demo_data import demo_fixture
from wandb_mirror.digests import manifest_digest
from wandb_mirror.fixtures import FixtureError, parse, seed
from wandb_mirror.store import Store

SMALL = {
    "viewer": {"username": "ada", "entity": "acme"},
    "projects": [{
        "name": "demo",
        "sweeps": [{"name": "sw1", "method": "grid", "metric": {"name": "loss", "goal": "minimize"}}],
        "runs": [
            {"id": "run1", "state": "finished", "sweep": "sw1", "config": {"lr": 0.1, "model": {"depth": 4}},
             "tags": ["baseline"], "history": {"steps": 50, "metrics": ["loss", "acc"], "seed": 1},
             "events": {"count": 5}, "files": [{"name": "config.yaml", "text": "lr: 0.1\n"},
                                               {"name": "model.bin", "size": 4096, "seed": 7}]},
            {"id": "run2", "state": "crashed", "history": [{"loss": 1.0}, {"loss": float("nan")}]},
        ],
        "artifacts": [{"name": "data", "type": "dataset", "versions": [
            {"files": [{"path": "a.txt", "text": "hello"}], "created_by": "run1"},
            {"files": [{"path": "a.txt", "text": "hello"}, {"path": "b.bin", "size": 10, "alg": "xxh128"}],
             "used_by": ["run2"]}]}],
    }],
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wandb_mirror.cli", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "mutate, path",
    [
        (lambda d: d["projects"][0]["runs"][1].update(state="done"), "projects[0].runs[1].state"),
        (lambda d: d["projects"][0]["runs"][0]["history"].update(steps="ten"), "projects[0].runs[0].history.steps"),
        (lambda d: d["projects"][0]["runs"][0].update(sweep="nope"), "projects[0].runs[0].sweep"),
        (lambda d: d["projects"][0]["runs"][0].update(colour="red"), "projects[0].runs[0].colour"),
        (lambda d: d["projects"][0]["artifacts"][0]["versions"][0]["files"][0].update(path="../../etc/passwd"),
         "projects[0].artifacts[0].versions[0].files[0].path"),
        (lambda d: d["projects"][0]["runs"].append({"id": "run1"}), "projects[0].runs[2].id"),
        (lambda d: d["projects"][0]["sweeps"][0]["metric"].update(goal="up"), "projects[0].sweeps[0].metric.goal"),
        (lambda d: d["projects"][0].pop("name"), "projects[0]"),
    ],
)
def test_bad_fixture_names_the_path(mutate, path):
    doc = copy.deepcopy(SMALL)
    mutate(doc)
    with pytest.raises(FixtureError) as e:
        parse(doc)
    assert e.value.path == path
    assert path in str(e.value)


def test_bad_fixture_cli_exit_2_and_nothing_written(tmp_path):
    doc = copy.deepcopy(SMALL)
    doc["projects"][0]["runs"][1]["state"] = "done"
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    store = tmp_path / "store"
    r = cli("seed", "--store", str(store), str(f))
    assert r.returncode == 2
    assert "projects[0].runs[1].state" in r.stderr
    assert "Traceback" not in r.stderr
    assert not store.exists()
    (tmp_path / "broken.json").write_text("{not json")
    r = cli("seed", "--store", str(store), str(tmp_path / "broken.json"))
    assert r.returncode == 2 and "not valid JSON" in r.stderr and not store.exists()


def test_seed_small_fixture_contents(tmp_path):
    with Store(tmp_path / "s") as store:
        rep = seed(store, SMALL)
        assert (rep.runs, rep.artifacts, rep.files) == (2, 2, 2)
        cat = store.catalog
        run = cat.get_run(cat.project_pk("acme", "demo"), "run1")
        assert run.config_values() == {"lr": 0.1, "model": {"depth": 4}}
        assert json.loads(run.config)["lr"] == {"value": 0.1, "desc": None}
        assert run.last_step == 49 and json.loads(run.history_keys)["lastStep"] == 49
        assert run.summary_values()["_step"] == 49
        assert run.storage_id == ids.run_storage_id("acme", "demo", "run1")
        rows = [t for _, t in store.history.texts(cat.run_pk(cat.project_pk("acme", "demo"), "run2"))]
        assert "NaN" in rows[1]
        # every referenced object is there and hashes to its key
        for md5, _ in cat.referenced_objects():
            assert hashlib.md5(store.objects.read_bytes(md5)).hexdigest() == md5
        # artifact digest and xxh128 entry follow W&B's rules
        arts = cat.query("SELECT * FROM artifacts ORDER BY version_index")
        manifest = json.loads(store.objects.read_bytes(arts[1]["manifest_md5"]))
        assert manifest["contents"]["b.bin"]["extra"] == {"alg": "XXH128"}
        assert arts[1]["digest"] == manifest_digest({p: e["digest"] for p, e in manifest["contents"].items()})
        a_txt = manifest["contents"]["a.txt"]["digest"]
        assert a_txt == base64.b64encode(hashlib.md5(b"hello").digest()).decode()
        assert json.loads(arts[1]["aliases"]) == ["latest"] and json.loads(arts[0]["aliases"]) == []
        sweep = cat.query_one("SELECT * FROM sweeps")
        assert sweep["run_count"] == 1 and sweep["metric_name"] == "loss"


def test_seed_is_reproducible(tmp_path):
    digests = []
    for name in ("a", "b"):
        with Store(tmp_path / name) as store:
            seed(store, demo_fixture())
            digests.append(sorted(o.md5 for o in store.objects.iter_objects()))
            digests.append(store.catalog.query("SELECT run_id, config, summary, history_keys FROM runs ORDER BY pk"))
    assert digests[0] == digests[2] and digests[1] == digests[3]


def test_demo_fixture_has_what_the_issue_asks(tmp_path):
    with Store(tmp_path / "s") as store:
        seed(store, demo_fixture())
        cat = store.catalog
        assert cat.scalar("SELECT COUNT(*) FROM projects") >= 2
        assert cat.scalar("SELECT COUNT(*) FROM runs") >= 30
        states = {r["state"] for r in cat.query("SELECT DISTINCT state FROM runs")}
        assert {"running", "finished", "crashed", "failed"} <= states
        assert cat.scalar("SELECT COUNT(*) FROM runs WHERE sweep_name IS NOT NULL AND state = 'finished'") >= 10
        assert cat.scalar("SELECT metric_goal FROM sweeps") == "minimize"
        texts = [t for r in cat.query("SELECT pk FROM runs") for _, t in store.history.texts(r["pk"])]
        assert any("NaN" in t for t in texts) and any("Infinity" in t for t in texts)
        assert any(ord(c) > 127 for r in cat.query("SELECT display_name FROM runs") for c in r["display_name"])
        assert cat.scalar("SELECT COUNT(*) FROM events") > 0
        # artifact versions share most files: far fewer distinct objects than references
        refs = cat.scalar("SELECT COUNT(*) FROM artifact_files WHERE md5 IS NOT NULL")
        distinct = cat.scalar("SELECT COUNT(DISTINCT md5) FROM artifact_files WHERE md5 IS NOT NULL")
        assert distinct < refs * 0.6
        assert cat.scalar("SELECT COUNT(*) FROM artifact_files WHERE ref IS NOT NULL") >= 1


def test_demo_cli(tmp_path: Path):
    r = cli("seed", "--store", str(tmp_path / "s"), "--demo")
    assert r.returncode == 0, r.stderr
    assert "38 runs" in r.stdout
    r = cli("seed", "--store", str(tmp_path / "s"))
    assert r.returncode == 2 and "FIXTURE.json or --demo" in r.stderr


def test_demo_scales():
    plan = parse(demo_fixture(scale=3))
    assert sum(len(p.runs) for p in plan.projects) == 3 * 38
