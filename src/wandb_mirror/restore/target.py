"""The target W&B server, spoken to with the same protocol the official client's wandb-core speaks.

Every document here is one the official client sends (wandb-core 0.31's UpsertBucket, CreateRunFiles,
CreateArtifact, CreateArtifactFiles, CreateArtifactManifest, CommitArtifact, UseArtifact; the public
API's UpsertSweep), or a subset of one; history, events and the run's end travel on the file_stream
endpoint as wandb-core sends them. Retries, Retry-After and rate limits are the transport's.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..client.transport import Transport
from ..urlnames import quote_segment

UPSERT_BUCKET = """mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String,
 $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String,
 $config: JSONString, $host: String, $jobType: String, $state: String, $sweep: String, $tags: [String!],
 $summaryMetrics: JSONString) {
  upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity,
   description: $description, displayName: $displayName, notes: $notes, config: $config, commit: $commit,
   host: $host, jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics}) {
    bucket { id name project { id name entity { id name } } }
    inserted
  }
}"""

CREATE_RUN_FILES = """mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
  createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) {
    runID uploadHeaders files { name uploadUrl }
  }
}"""

CREATE_ARTIFACT = """mutation CreateArtifact($input: CreateArtifactInput!) {
  createArtifact(input: $input) { artifact { id state digest versionIndex } }
}"""

CREATE_ARTIFACT_FILES = """mutation CreateArtifactFiles($input: CreateArtifactFilesInput!) {
  createArtifactFiles(input: $input) { files { edges { node { storagePath uploadUrl uploadHeaders } } } }
}"""

CREATE_ARTIFACT_MANIFEST = """mutation CreateArtifactManifest($artifactID: ID!, $name: String!, $digest: String!,
 $entityName: String!, $projectName: String!, $runName: String!, $manifestType: ArtifactManifestType!) {
  createArtifactManifest(input: {artifactID: $artifactID, name: $name, digest: $digest, entityName: $entityName,
   projectName: $projectName, runName: $runName, type: $manifestType}) {
    artifactManifest { id file { id uploadUrl uploadHeaders } }
  }
}"""

COMMIT_ARTIFACT = """mutation CommitArtifact($artifactID: ID!) {
  commitArtifact(input: {artifactID: $artifactID}) { artifact { id digest } }
}"""

USE_ARTIFACT = """mutation UseArtifact($input: UseArtifactInput!) { useArtifact(input: $input) { artifact { id } } }"""

UPSERT_SWEEP = """mutation UpsertSweep($config: String, $description: String, $entityName: String,
 $projectName: String, $displayName: String, $state: String) {
  upsertSweep(input: {config: $config, description: $description, entityName: $entityName,
   projectName: $projectName, displayName: $displayName, state: $state}) { sweep { name id } inserted }
}"""

PROJECT_SWEEPS = """query GetSweeps($project: String!, $entity: String!) {
  project(name: $project, entityName: $entity) { sweeps { edges { node { name displayName config } } } }
}"""


def _headers(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for h in pairs or []:
        k, _, v = h.partition(":")
        if k.strip():
            out[k.strip()] = v.strip()
    return out


@dataclass
class CreatedArtifact:
    id: str
    state: str
    version_index: int | None


class Target:
    def __init__(self, transport: Transport):
        self.t = transport

    def upsert_run(self, entity: str, project: str, name: str, fields: dict[str, Any]) -> None:
        self.t.graphql("UpsertBucket", UPSERT_BUCKET, {"entity": entity, "project": project, "name": name, **fields})

    def file_stream(self, entity: str, project: str, run: str, payload: dict[str, Any]) -> None:
        url = f"/files/{quote_segment(entity)}/{quote_segment(project)}/{quote_segment(run)}/file_stream"
        self.t.send("POST", url, "file_stream", data=json.dumps(payload).encode(),
                    headers={"Content-Type": "application/json"})

    def run_upload_urls(self, entity: str, project: str, run: str, names: list[str]) -> dict[str, tuple[str, dict]]:
        data = self.t.graphql("CreateRunFiles", CREATE_RUN_FILES,
                              {"entity": entity, "project": project, "run": run, "files": names})
        payload = data["createRunFiles"]
        headers = _headers(payload.get("uploadHeaders"))
        return {f["name"]: (f["uploadUrl"], headers) for f in payload["files"] if f.get("uploadUrl")}

    def put(self, url: str, open_body: Callable[[], BinaryIO], md5_hex: str, headers: dict[str, str],
            operation: str) -> None:
        h = {"Content-Type": "application/octet-stream", **headers}
        h.setdefault("Content-MD5", base64.b64encode(bytes.fromhex(md5_hex)).decode())
        self.t.send("PUT", url, operation, data=open_body, headers=h)

    def create_artifact(self, fields: dict[str, Any]) -> CreatedArtifact:
        a = self.t.graphql("CreateArtifact", CREATE_ARTIFACT, {"input": fields})["createArtifact"]["artifact"]
        return CreatedArtifact(a["id"], a["state"], a.get("versionIndex"))

    def artifact_upload_urls(self, artifact_id: str, files: list[tuple[str, str]]) -> dict[str, tuple[str, dict]]:
        """{name: (upload url, headers)} for the (name, base64 md5) files the target does not hold yet."""
        specs = [{"artifactID": artifact_id, "name": n, "md5": m} for n, m in files]
        data = self.t.graphql("CreateArtifactFiles", CREATE_ARTIFACT_FILES,
                              {"input": {"artifactFiles": specs, "storageLayout": "V2"}})
        out = {}
        for (name, _), edge in zip(files, data["createArtifactFiles"]["files"]["edges"]):
            node = edge["node"]
            if node.get("uploadUrl"):
                out[name] = (node["uploadUrl"], _headers(node.get("uploadHeaders")))
        return out

    def manifest_upload_url(self, artifact_id: str, digest: str, entity: str, project: str,
                            run: str) -> tuple[str, dict[str, str]]:
        data = self.t.graphql("CreateArtifactManifest", CREATE_ARTIFACT_MANIFEST, {
            "artifactID": artifact_id, "name": "wandb_manifest.json", "digest": digest, "entityName": entity,
            "projectName": project, "runName": run, "manifestType": "FULL"})
        f = data["createArtifactManifest"]["artifactManifest"]["file"]
        return f["uploadUrl"], _headers(f.get("uploadHeaders"))

    def commit_artifact(self, artifact_id: str) -> str:
        return self.t.graphql("CommitArtifact", COMMIT_ARTIFACT, {"artifactID": artifact_id})["commitArtifact"][
            "artifact"]["digest"]

    def use_artifact(self, entity: str, project: str, run: str, artifact_id: str) -> None:
        self.t.graphql("UseArtifact", USE_ARTIFACT, {"input": {"entityName": entity, "projectName": project,
                                                               "runName": run, "artifactID": artifact_id}})

    def sweeps(self, entity: str, project: str) -> list[dict[str, Any]]:
        """The project's sweeps ({name, displayName, config}); none when the project does not exist yet."""
        data = self.t.graphql("GetSweeps", PROJECT_SWEEPS, {"entity": entity, "project": project})
        project_node = data.get("project") or {}
        return [e["node"] for e in (project_node.get("sweeps") or {}).get("edges", []) if e.get("node")]

    def create_sweep(self, entity: str, project: str, config_yaml: str, display_name: str | None,
                     description: str | None, state: str | None) -> str:
        data = self.t.graphql("UpsertSweep", UPSERT_SWEEP, {
            "config": config_yaml, "entityName": entity, "projectName": project, "displayName": display_name,
            "description": description, "state": state})
        return data["upsertSweep"]["sweep"]["name"]
