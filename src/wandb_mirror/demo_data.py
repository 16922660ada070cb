"""The built-in demo: a realistic team workspace, as a fixture document (see docs/fixtures.md).

Two projects, runs in every state, a finished Bayesian sweep with a metric goal, artifact
versions that share most of their files (so dedup shows), binary and text files, nested config,
NaN and Infinity in history, unicode names, tags, notes, system events and a report.
Everything derives from fixed seeds: two calls give byte-identical data.
"""

from __future__ import annotations

import random
from typing import Any

ENTITY = "acme-ml"
USER = "ada"


def _run(i: int, rng: random.Random, *, steps: int, state: str, sweep: str | None = None,
         lr: float | None = None, prefix: str = "r") -> dict[str, Any]:
    run_id = f"{prefix}{i:03d}x{rng.randrange(16**4):04x}"
    lr = lr if lr is not None else round(10 ** rng.uniform(-4, -1), 6)
    batch = rng.choice([32, 64, 128])
    depth = rng.choice([18, 34, 50])
    final_loss = round(0.05 + 2.0 * abs(lr - 0.01) + rng.uniform(0, 0.1), 4)
    run: dict[str, Any] = {
        "id": run_id,
        "display_name": f"{rng.choice(['brisk', 'calm', 'eager', 'fuzzy', 'gentle', 'hazy'])}-"
                        f"{rng.choice(['river', 'forest', 'meadow', 'comet', 'harbor'])}-{i}",
        "state": state,
        "config": {
            "lr": lr, "batch_size": batch, "epochs": 10,
            "optimizer": {"name": rng.choice(["adam", "sgd"]), "betas": [0.9, 0.999], "weight_decay": 1e-4},
            "model": {"arch": f"resnet{depth}", "layers": {"depth": depth, "width": 64}, "dropout": 0.1},
            "dataset": "cifar10-subset:v3",
        },
        "tags": rng.sample(["baseline", "augment", "fp16", "ablation", "prod-candidate"], k=rng.randint(0, 2)),
        "group": rng.choice(["resnet", "vit", None]),
        "job_type": "train",
        "host": f"gpu-node-{rng.randint(1, 8)}",
        "commit": f"{rng.randrange(16**10):010x}",
        "history": {
            "steps": steps,
            "metrics": {
                "loss": {"start": 2.3, "end": final_loss, "noise": 0.03},
                "acc": {"start": 0.1, "end": round(0.95 - final_loss / 3, 4), "noise": 0.01},
                "val/loss": {"start": 2.4, "end": final_loss + 0.05, "noise": 0.04},
                "lr": {"start": lr, "end": lr / 10, "noise": 0.0},
            },
            "seed": 1000 + i,
        },
        "events": {"count": max(steps // 20, 3), "seed": 2000 + i},
        "files": [
            {"name": "config.yaml", "text": f"lr: {lr}\nbatch_size: {batch}\nmodel: resnet{depth}\n"},
            {"name": "wandb-metadata.json",
             "text": '{"os": "Linux", "python": "3.11.7", "host": "gpu-node", "gpu": "A100", "gpu_count": 1}'},
            {"name": "output.log", "size": 4000 + 97 * i, "kind": "text", "seed": 3000 + i},
            {"name": "media/images/samples_0.png", "size": 2048 + i, "seed": 4000 + i, "mimetype": "image/png"},
        ],
    }
    if sweep:
        run["sweep"] = sweep
    if i % 5 == 0:
        run["files"].append({"name": "model.ckpt", "size": 48_000 + i, "seed": 5000 + i})
    if i % 7 == 3:
        run["notes"] = "Diverged after warmup; rerun with smaller lr."
    return run


def demo_fixture(scale: int = 1) -> dict[str, Any]:
    """The demo workspace. `scale` multiplies run counts and history length (bench uses it)."""
    rng = random.Random(20240101)
    steps = 240 * scale
    runs: list[dict[str, Any]] = []

    # a finished Bayesian sweep: 12 finished members, one crashed, one failed (excluded from "best")
    sweep_states = ["finished"] * 12 + ["crashed", "failed"]
    for k, st in enumerate(sweep_states * scale):
        lr = round(10 ** (-4 + 3 * (k % 14) / 13), 6)
        runs.append(_run(len(runs), rng, steps=steps, state=st, sweep="lr-sweep", lr=lr))
    # the rest of the project: every state
    for st in (["finished"] * 6 + ["running"] * 3 + ["crashed"] * 2 + ["failed"] * 2 + ["killed"]) * scale:
        runs.append(_run(len(runs), rng, steps=steps, state=st))
    # NaN and Infinity in history, a nested history value, unicode
    runs[1]["history"]["nan_steps"] = [5, 17]
    runs[1]["history"]["inf_steps"] = [9]
    runs[15]["display_name"] = "résumé-β-実験"
    runs[15]["notes"] = "Ünïcödé notes: 学習率を下げた ✓"
    runs[15]["tags"] = ["ünïcode", "baseline"]
    runs[15]["files"].append({"name": "notes/ümlaut-日本.txt", "text": "grüße, 世界\n"})
    runs[16]["history"] = [
        {"_step": 0, "_runtime": 1.0, "_timestamp": 1704067200.0, "loss": 1.0, "val": {"loss": 1.1, "acc": 0.2}},
        {"_step": 1, "_runtime": 2.0, "_timestamp": 1704067201.0, "loss": float("nan"), "val": {"loss": 0.9, "acc": 0.4}},
        {"_step": 2, "_runtime": 3.0, "_timestamp": 1704067202.0, "loss": float("inf"), "val": {"loss": 0.7, "acc": 0.6}},
        {"_step": 3, "_runtime": 4.0, "_timestamp": 1704067203.0, "loss": 0.4, "text": "ok"},
    ]
    # a summary written by hand that lacks what history has: summary_backfill's work
    runs[17]["summary"] = {"best_epoch": 7, "notes": "summary set by hand"}
    best_sweep = min((r for r in runs if r.get("sweep") and r["state"] == "finished" and isinstance(r["history"], dict)),
                     key=lambda r: r["history"]["metrics"]["val/loss"]["end"])  # type: ignore[index]

    shared = [{"path": f"images/train_{k:02d}.bin", "size": 6000 + 37 * k, "seed": 100 + k} for k in range(10)]
    dataset_versions = []
    for v in range(4):
        files = [dict(f) for f in shared]
        files[v] = dict(files[v], seed=900 + v)  # one changed file per version: the rest dedups
        files.append({"path": "labels.csv", "text": "".join(f"{k},{(k * 7 + v) % 10}\n" for k in range(50))})
        files.append({"path": "README.md", "text": "# CIFAR-10 subset\nA small sample for the demo.\n"})
        if v == 3:
            files.append({"path": "extra/stats.json", "text": '{"mean": 0.47, "std": 0.25}', "alg": "xxh128"})
            files.append({"path": "remote/full.tar", "ref": "s3://acme-datasets/cifar10/full.tar",
                          "digest": "9b2cf535f27731c974343645a3985328", "size": 170_498_071})
        dataset_versions.append({"files": files, "metadata": {"rows": 500 + v * 100, "split": "train"},
                                 "description": f"subset revision {v}", "created_by": runs[0]["id"],
                                 "used_by": [r["id"] for r in runs[14:17]], **({"aliases": ["prod"]} if v == 2 else {})})
    model_versions = [
        {"files": [{"path": "model.pt", "size": 30_000, "seed": 70 + v}, {"path": "config.json", "text": '{"arch": "resnet"}'}],
         "created_by": r["id"], "metadata": {"val_loss": r["history"]["metrics"]["val/loss"]["end"]}}
        for v, r in enumerate([runs[5], best_sweep])
    ]

    vision = {
        "entity": ENTITY, "name": "image-classification", "description": "ResNet and ViT on CIFAR-10 subsets",
        "created_at": "2024-01-01T00:00:00",
        "sweeps": [{"name": "lr-sweep", "display_name": "learning-rate sweep", "method": "bayes",
                    "metric": {"name": "val/loss", "goal": "minimize"},
                    "parameters": {"lr": {"min": 0.0001, "max": 0.1, "distribution": "log_uniform_values"},
                                   "batch_size": {"values": [32, 64, 128]}}, "state": "FINISHED"}],
        "runs": runs,
        "artifacts": [
            {"name": "cifar10-subset", "type": "dataset", "description": "training images", "versions": dataset_versions},
            {"name": "resnet-model", "type": "model", "versions": model_versions},
        ],
        "reports": [{"name": "weekly-summary", "display_name": "Weekly summary — semaine 1",
                     "description": "What we learned", "spec": {"version": 5, "blocks": [{"type": "paragraph",
                                                                                          "children": [{"text": "Loss is down."}]}]}}],
    }

    rng2 = random.Random(7)
    nlp_runs = []
    for k, st in enumerate((["finished"] * 8 + ["running", "crashed"]) * scale):
        r = _run(k, rng2, steps=steps // 2, state=st, prefix="n")
        r["config"]["model"]["arch"] = "transformer"
        r["config"]["tokenizer"] = {"name": "sentencepiece", "vocab": 32000}
        nlp_runs.append(r)
    nlp = {
        "entity": ENTITY, "name": "nlp-ünïcode", "description": "Language models — multilingual",
        "created_at": "2024-02-01T00:00:00", "runs": nlp_runs,
        "artifacts": [{"name": "corpus", "type": "dataset", "versions": [
            {"files": [{"path": "corpus/part-0.txt", "size": 20_000, "kind": "text", "seed": 1},
                       {"path": "corpus/part-1.txt", "size": 20_000 + v, "kind": "text", "seed": 2 + v}],
             "created_by": nlp_runs[0]["id"]} for v in range(2)]}],
    }
    # console output on several runs, a running one among them
    running = [r for r in runs + nlp_runs if r["state"] == "running"]
    for k, r in enumerate([runs[0], runs[5], nlp_runs[0], *running[:2]]):
        r["console"] = {"lines": 60 * scale, "seed": k}
    return {
        "version": 1,
        "viewer": {"username": USER, "entity": ENTITY, "email": "ada@acme.example", "name": "Ada Lovelace"},
        "entities": [{"name": ENTITY, "is_team": True}],
        "projects": [vision, nlp],
        **_org_sections(),
    }


def _org_sections() -> dict[str, Any]:
    """The organization around the team: members, a model registry, a webhook and two automations."""
    model = f"{ENTITY}/image-classification/resnet-model"
    return {
        "organization": {"name": "acme-org", "entity": "acme-org", "teams": {ENTITY: [
            {"username": USER, "name": "Ada Lovelace", "email": "ada@acme.example", "role": "admin"},
            {"username": "grace", "name": "Grace Hopper", "email": "grace@acme.example"},
            {"username": "alan", "name": "Alan Turing", "email": "alan@acme.example", "role": "viewer"}]}},
        "registries": [{"name": "model", "description": "Models cleared for production", "artifact_types": ["model"],
                        "collections": [
                            {"name": "cifar-classifier", "type": "model", "description": "the image classifier",
                             "tags": ["vision"], "versions": [{"artifact": f"{model}:v0", "aliases": ["staging"]},
                                                              {"artifact": f"{model}:v1", "aliases": ["production"]}]},
                            {"name": "resnet-baseline", "type": "model", "versions": [{"artifact": f"{model}:v0"}]}]}],
        "integrations": [{"kind": "webhook", "name": "deploy-hook", "url": "https://ci.acme.example/hooks/wandb"}],
        "automations": [
            {"name": "deploy-on-production", "description": "redeploy when production moves",
             "scope": {"registry_collection": "model/cifar-classifier"},
             "event": {"type": "ADD_ARTIFACT_ALIAS", "filter": {"filter": {"$or": [{"$and": [
                 {"alias": {"$regex": "^production$"}}]}]}}},
             "action": {"webhook": "deploy-hook", "payload": {"event": "${event_type}", "version": "${artifact_version}"}}},
            {"name": "new-model-version", "enabled": False, "scope": {"project": "image-classification"},
             "event": {"type": "CREATE_ARTIFACT"},
             "action": {"webhook": "deploy-hook", "payload": {"artifact": "${artifact_version_string}"}}},
        ],
    }
