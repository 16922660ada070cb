"""The target's organization side: the documents restore sends for registries, links and automations.

The writes are subsets of what the official client 0.31 sends: `upsertModel` with registry fields
(`api.create_registry()`), `linkArtifact` (`Artifact.link()`), `updateArtifactPortfolio` and
`createArtifactCollectionTagAssignments` (`ArtifactCollection.save()`), `createFilterTrigger`
(`api.create_automation()`). The reads find what the target already holds, so nothing is created twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..client.transport import Transport

ORG_OF_ENTITY = """query OrgOfEntity($entity: String!) {
  entity(name: $entity) { organization { name orgEntity { name } } }
}"""

ORGANIZATION = """query Organization($name: String!) { organization(name: $name) { name orgEntity { name } } }"""

ENTITY = """query EntityId($entity: String!) { entity(name: $entity) { id } }"""

PROJECT = """query ProjectIds($entity: String!, $project: String!) {
  entity(name: $entity) { id project(name: $project) { id name } }
}"""

COLLECTION = """query CollectionId($entity: String!, $project: String!, $name: String!) {
  project(name: $project, entityName: $entity) { artifactCollection(name: $name) { id name } }
}"""

UPSERT_REGISTRY = """mutation UpsertRegistry($input: UpsertModelInput!) {
  upsertModel(input: $input) { inserted project { id name } }
}"""

LINK_ARTIFACT = """mutation LinkArtifact($input: LinkArtifactInput!) {
  linkArtifact(input: $input) { versionIndex artifactMembership { id versionIndex artifactCollection { id name } } }
}"""

UPDATE_PORTFOLIO = """mutation UpdateArtifactPortfolio($input: UpdateArtifactPortfolioInput!) {
  updateArtifactPortfolio(input: $input) { artifactCollection { id } }
}"""

ADD_COLLECTION_TAGS = """mutation AddArtifactCollectionTags($input: CreateArtifactCollectionTagAssignmentsInput!) {
  createArtifactCollectionTagAssignments(input: $input) { tags { name } }
}"""

INTEGRATIONS = """query Integrations($entity: String!, $after: String) {
  entity(name: $entity) { integrations(first: 100, after: $after) {
    edges { node { __typename ... on GenericWebhookIntegration { id name urlEndpoint }
                               ... on SlackIntegration { id teamName channelName } } }
    pageInfo { hasNextPage endCursor } } }
}"""

TRIGGERS = """query Triggers($entity: String!, $after: String) {
  entity(name: $entity) { triggers(first: 100, after: $after) {
    edges { node { id name } } pageInfo { hasNextPage endCursor } } }
}"""

CREATE_AUTOMATION = """mutation CreateAutomation($input: CreateFilterTriggerInput!) {
  createFilterTrigger(input: $input) { trigger { id name } }
}"""

# What restore asks the target before it writes (a re-run may ask again; it never writes again).
READ_OPERATIONS = frozenset({"OrgOfEntity", "Organization", "EntityId", "ProjectIds", "CollectionId", "Integrations",
                             "Triggers"})


@dataclass
class TargetOrg:
    name: str
    entity: str


class OrgTarget:
    def __init__(self, transport: Transport):
        self.t = transport

    def _q(self, name: str, doc: str, variables: dict[str, Any]) -> dict[str, Any]:
        return self.t.graphql(name, doc, variables) or {}

    def organization(self, name: str | None, entities: list[str]) -> TargetOrg | None:
        """The organization named `name`, else the first of `entities`' organizations."""
        if name:
            org = self._q("Organization", ORGANIZATION, {"name": name}).get("organization")
        else:
            org = None
            for e in entities:
                org = (self._q("OrgOfEntity", ORG_OF_ENTITY, {"entity": e}).get("entity") or {}).get("organization")
                if org:
                    break
        if not org or not (org.get("orgEntity") or {}).get("name"):
            return None
        return TargetOrg(org["name"], org["orgEntity"]["name"])

    def entity_id(self, entity: str) -> str | None:
        return (self._q("EntityId", ENTITY, {"entity": entity}).get("entity") or {}).get("id")

    def project_id(self, entity: str, project: str) -> str | None:
        node = (self._q("ProjectIds", PROJECT, {"entity": entity, "project": project}).get("entity") or {})
        return (node.get("project") or {}).get("id")

    def collection_id(self, entity: str, project: str, name: str) -> str | None:
        node = self._q("CollectionId", COLLECTION, {"entity": entity, "project": project, "name": name})
        return ((node.get("project") or {}).get("artifactCollection") or {}).get("id")

    def upsert_registry(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._q("UpsertRegistry", UPSERT_REGISTRY, {"input": fields})["upsertModel"]

    def link(self, fields: dict[str, Any]) -> dict[str, Any]:
        return self._q("LinkArtifact", LINK_ARTIFACT, {"input": fields})["linkArtifact"]

    def describe_collection(self, collection_id: str, description: str) -> None:
        self._q("UpdateArtifactPortfolio", UPDATE_PORTFOLIO,
                {"input": {"artifactPortfolioID": collection_id, "description": description}})

    def tag_collection(self, entity: str, project: str, collection: str, tags: list[str]) -> None:
        self._q("AddArtifactCollectionTags", ADD_COLLECTION_TAGS, {"input": {
            "entityName": entity, "projectName": project, "artifactCollectionName": collection,
            "tags": [{"tagName": t} for t in tags]}})

    def _paged(self, name: str, doc: str, entity: str, field: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        after = None
        while True:
            conn = (self._q(name, doc, {"entity": entity, "after": after}).get("entity") or {}).get(field) or {}
            out += [e["node"] for e in conn.get("edges") or [] if e.get("node")]
            page = conn.get("pageInfo") or {}
            if not page.get("hasNextPage") or not page.get("endCursor"):
                return out
            after = page["endCursor"]

    def integrations(self, entity: str) -> list[dict[str, Any]]:
        return self._paged("Integrations", INTEGRATIONS, entity, "integrations")

    def automation_names(self, entity: str) -> set[str]:
        return {n["name"] for n in self._paged("Triggers", TRIGGERS, entity, "triggers")}

    def create_automation(self, fields: dict[str, Any]) -> str:
        return self._q("CreateAutomation", CREATE_AUTOMATION, {"input": fields})["createFilterTrigger"]["trigger"]["id"]
