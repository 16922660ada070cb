"""The client's GraphQL documents: valid against the project's SDL, and shaped like the official client's.

OFFICIAL_FIELDS lists every (Type.field -> arguments) the official client (wandb 0.31.0) selects in
the operations it sends, extracted once from its operations (wandb 0.31.0 wheel and wandb-core);
tests must not read outside the repository, so the list is copied here. A field of ours outside
it must be a documented DEVIATION (client/documents.py says why).
"""

from __future__ import annotations

import pytest
from graphql import TypeInfo, TypeInfoVisitor, Visitor, parse, validate, visit

from wandb_mirror.client import documents as D

DEVIATIONS = {
    # change marker for the reconcile pass; see RUN_FRAGMENT in client/documents.py
    "Run.updatedAt": [],
    # run metadata no official document selects; see RUN_FRAGMENT in client/documents.py
    "Run.host": [],
}

OFFICIAL_FIELDS = \
{'ApiKey.description': [],
 'ApiKey.id': [],
 'ApiKey.name': [],
 'ApiKeyConnection.edges': [],
 'ApiKeyEdge.node': [],
 'Artifact.__typename': [],
 'Artifact.aliases': [],
 'Artifact.artifactSequence': [],
 'Artifact.artifactType': [],
 'Artifact.commitHash': [],
 'Artifact.createdAt': [],
 'Artifact.currentManifest': [],
 'Artifact.description': [],
 'Artifact.digest': [],
 'Artifact.digestAlgorithm': [],
 'Artifact.fileCount': [],
 'Artifact.historyStep': [],
 'Artifact.id': [],
 'Artifact.metadata': [],
 'Artifact.size': [],
 'Artifact.state': [],
 'Artifact.tags': [],
 'Artifact.ttlDurationSeconds': [],
 'Artifact.ttlIsInherited': [],
 'Artifact.updatedAt': [],
 'Artifact.versionIndex': [],
 'ArtifactAlias.__typename': [],
 'ArtifactAlias.alias': [],
 'ArtifactAlias.artifactCollection': [],
 'ArtifactAlias.id': [],
 'ArtifactCollection.__typename': [],
 'ArtifactCollection.artifactMembership': ['aliasName'],
 'ArtifactCollection.artifacts': ['after', 'filters', 'first', 'order'],
 'ArtifactCollection.createdAt': [],
 'ArtifactCollection.defaultArtifactType': [],
 'ArtifactCollection.description': [],
 'ArtifactCollection.id': [],
 'ArtifactCollection.name': [],
 'ArtifactCollection.project': [],
 'ArtifactCollection.tags': [],
 'ArtifactCollection.updatedAt': [],
 'ArtifactCollectionConnection.edges': [],
 'ArtifactCollectionConnection.pageInfo': [],
 'ArtifactCollectionConnection.totalCount': [],
 'ArtifactCollectionEdge.node': [],
 'ArtifactCollectionMembership.__typename': [],
 'ArtifactCollectionMembership.aliases': [],
 'ArtifactCollectionMembership.artifact': [],
 'ArtifactCollectionMembership.artifactCollection': [],
 'ArtifactCollectionMembership.createdAt': [],
 'ArtifactCollectionMembership.files': ['after', 'first', 'names'],
 'ArtifactCollectionMembership.id': [],
 'ArtifactCollectionMembership.versionIndex': [],
 'ArtifactConnection.edges': [],
 'ArtifactConnection.pageInfo': [],
 'ArtifactConnection.totalCount': [],
 'ArtifactEdge.node': [],
 'ArtifactManifest.file': [],
 'ArtifactSequence.__typename': [],
 'ArtifactSequence.name': [],
 'ArtifactSequence.project': [],
 'ArtifactType.__typename': [],
 'ArtifactType.artifactCollection': ['name'],
 'ArtifactType.artifactCollections': ['after', 'filters', 'first', 'order'],
 'ArtifactType.createdAt': [],
 'ArtifactType.description': [],
 'ArtifactType.id': [],
 'ArtifactType.name': [],
 'ArtifactTypeConnection.edges': [],
 'ArtifactTypeConnection.pageInfo': [],
 'ArtifactTypeEdge.node': [],
 'CreateRunFilesPayload.files': [],
 'CreateRunFilesPayload.runID': [],
 'CreateRunFilesPayload.uploadHeaders': [],
 'DeleteFilesPayload.success': [],
 'DeleteRunPayload.clientMutationId': [],
 'Entity.id': [],
 'Entity.name': [],
 'EntityConnection.edges': [],
 'EntityEdge.node': [],
 'File.__typename': [],
 'File.digest': [],
 'File.directUrl': [],
 'File.displayName': [],
 'File.id': [],
 'File.md5': [],
 'File.mimetype': [],
 'File.name': [],
 'File.sizeBytes': [],
 'File.storagePath': [],
 'File.updatedAt': [],
 'File.uploadUrl': [],
 'File.url': ['upload'],
 'FileConnection.edges': [],
 'FileConnection.pageInfo': [],
 'FileConnection.totalCount': [],
 'FileEdge.cursor': [],
 'FileEdge.node': [],
 'MarkRunFilesUploadedPayload.success': [],
 'Mutation.createRunFiles': ['input'],
 'Mutation.deleteFiles': ['input'],
 'Mutation.deleteRun': ['input'],
 'Mutation.markRunFilesUploaded': ['input'],
 'Mutation.stopRun': ['input'],
 'Mutation.updateRunState': ['input'],
 'Mutation.upsertBucket': ['input'],
 'Mutation.upsertModel': ['input'],
 'PageInfo.__typename': [],
 'PageInfo.endCursor': [],
 'PageInfo.hasNextPage': [],
 'ParquetHistory.liveData': [],
 'ParquetHistory.parquetUrls': [],
 'Project.__typename': [],
 'Project.access': [],
 'Project.allViews': ['after', 'first', 'viewName', 'viewType'],
 'Project.artifactCollection': ['name'],
 'Project.artifactCollectionMembership': ['name'],
 'Project.artifactType': ['name'],
 'Project.artifactTypes': ['after', 'first'],
 'Project.createdAt': [],
 'Project.description': [],
 'Project.entity': [],
 'Project.entityName': [],
 'Project.id': [],
 'Project.internalId': [],
 'Project.isBenchmark': [],
 'Project.name': [],
 'Project.readOnly': [],
 'Project.run': ['name'],
 'Project.runCount': ['filters'],
 'Project.runs': ['after', 'filters', 'first', 'order'],
 'Project.sweep': ['sweepName'],
 'Project.sweeps': ['after', 'filters', 'first'],
 'Project.totalSweeps': [],
 'Project.user': [],
 'Project.views': [],
 'ProjectConnection.edges': [],
 'ProjectConnection.pageInfo': [],
 'ProjectEdge.node': [],
 'Query.artifact': ['id'],
 'Query.models': ['after', 'entityName', 'first'],
 'Query.project': ['entityName', 'name'],
 'Query.serverInfo': [],
 'Query.viewer': [],
 'Run.commit': [],
 'Run.config': [],
 'Run.createdAt': [],
 'Run.description': [],
 'Run.displayName': [],
 'Run.events': ['samples'],
 'Run.fileCount': [],
 'Run.files': ['after', 'first', 'names', 'pattern'],
 'Run.group': [],
 'Run.heartbeatAt': [],
 'Run.history': ['maxStep', 'minStep', 'samples'],
 'Run.historyKeys': [],
 'Run.historyLineCount': [],
 'Run.id': [],
 'Run.inputArtifacts': ['after', 'first'],
 'Run.jobType': [],
 'Run.name': [],
 'Run.notes': [],
 'Run.outputArtifacts': ['after', 'first'],
 'Run.parquetHistory': ['liveKeys'],
 'Run.project': [],
 'Run.projectId': [],
 'Run.readOnly': [],
 'Run.sampledHistory': ['specs'],
 'Run.state': [],
 'Run.summaryMetrics': [],
 'Run.sweepName': [],
 'Run.systemMetrics': [],
 'Run.tags': [],
 'Run.user': [],
 'RunConnection.edges': [],
 'RunConnection.pageInfo': [],
 'RunEdge.cursor': [],
 'RunEdge.node': [],
 'ServerFeature.isEnabled': [],
 'ServerFeature.name': [],
 'ServerInfo.features': [],
 'StopRunPayload.success': [],
 'Sweep.__typename': [],
 'Sweep.bestLoss': [],
 'Sweep.config': [],
 'Sweep.createdAt': [],
 'Sweep.description': [],
 'Sweep.displayName': [],
 'Sweep.id': [],
 'Sweep.method': [],
 'Sweep.name': [],
 'Sweep.runCount': [],
 'Sweep.runCountExpected': [],
 'Sweep.state': [],
 'Sweep.updatedAt': [],
 'SweepConnection.edges': [],
 'SweepConnection.pageInfo': [],
 'SweepEdge.node': [],
 'Tag.__typename': [],
 'Tag.id': [],
 'Tag.name': [],
 'TagConnection.edges': [],
 'TagEdge.node': [],
 'UpdateRunStatePayload.success': [],
 'UpsertBucketPayload.bucket': [],
 'UpsertBucketPayload.inserted': [],
 'UpsertModelPayload.inserted': [],
 'UpsertModelPayload.model': [],
 'UpsertModelPayload.project': [],
 'User.admin': [],
 'User.apiKeys': [],
 'User.deletedAt': [],
 'User.email': [],
 'User.entity': [],
 'User.flags': [],
 'User.id': [],
 'User.name': [],
 'User.photoUrl': [],
 'User.teams': [],
 'User.username': [],
 'VersionedArtifactConnection.edges': [],
 'VersionedArtifactConnection.pageInfo': [],
 'VersionedArtifactConnection.totalCount': [],
 'VersionedArtifactEdge.node': [],
 'VersionedArtifactEdge.version': [],
 'View.createdAt': [],
 'View.description': [],
 'View.displayName': [],
 'View.id': [],
 'View.name': [],
 'View.spec': [],
 'View.updatedAt': [],
 'View.user': [],
 'ViewConnection.edges': [],
 'ViewConnection.pageInfo': [],
 'ViewEdge.cursor': [],
 'ViewEdge.node': []}


def _schema():
    try:
        from wandb_mirror.server.schema import build_schema
    except ImportError:  # pragma: no cover - the server package ships the SDL
        pytest.skip("wandb_mirror/server/schema.graphql not available yet")
    return build_schema()


def _selections(schema, text: str) -> dict[str, set[str]]:
    ti = TypeInfo(schema)
    found: dict[str, set[str]] = {}

    class V(Visitor):
        def enter_field(self, node, *args):
            parent = ti.get_parent_type()
            if parent is not None:
                found.setdefault(f"{parent.name}.{node.name.value}", set()).update(a.name.value for a in node.arguments or [])

    visit(parse(text), TypeInfoVisitor(ti, V()))
    return found


DOCS = D.all_documents()


@pytest.mark.parametrize("doc", DOCS, ids=[f"{d.name}-{i}" for i, d in enumerate(DOCS)])
def test_document_validates_against_sdl(doc: D.Document) -> None:
    schema = _schema()
    errors = validate(schema, parse(doc.text))
    assert not errors, f"{doc.name}: {errors}"
    # the operation name we send is the one in the text
    assert f"query {doc.name}" in doc.text


@pytest.mark.parametrize("doc", DOCS, ids=[f"{d.name}-{i}" for i, d in enumerate(DOCS)])
def test_document_uses_only_official_shapes(doc: D.Document) -> None:
    schema = _schema()
    allowed = {**OFFICIAL_FIELDS, **DEVIATIONS}
    for field, args in _selections(schema, doc.text).items():
        assert field in allowed, f"{doc.name} selects {field}, which the official client never does (add a DEVIATION)"
        extra = args - set(allowed[field])
        assert not extra, f"{doc.name}: {field} gets arguments {extra} the official client never passes"


def test_feature_gated_shapes() -> None:
    none, all_ = frozenset(), frozenset({"ARTIFACT_DIGEST_ALGORITHM", "SWEEPS_QUERY_FILTERING",
                                        "ARTIFACT_COLLECTIONS_FILTERING_SORTING"})
    assert "digestAlgorithm" not in D.project_artifacts(none).text
    assert "digestAlgorithm" in D.project_artifacts(all_).text
    assert "$filters" not in D.get_sweeps(none).text and "$filters" in D.get_sweeps(all_).text
    assert "totalCount" not in D.artifact_type_collections(none).text
    assert "totalCount" in D.artifact_type_collections(all_).text


def test_no_document_asks_for_api_keys() -> None:
    for doc in DOCS:
        assert "apiKeys" not in doc.text, doc.name
