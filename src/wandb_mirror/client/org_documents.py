"""GraphQL documents for the organization side, in the shapes the official client sends (wandb 0.31.0:
sdk/artifacts/_generated/operations.py, apis/_generated/operations.py, automations/_generated/
operations.py, and wandb-core's RunConsoleLogTail). Deviations, each on purpose:

- TeamMembers is GetTeamEntity without `members.apiKey` and the entity's billing fields: a mirror
  never asks for a key.
- RegistryLinks is RegistryVersions trimmed to what a link is (membership, aliases, the source
  version's id and place); the version itself is mirrored from its own project.
- RunConsoleLogCount asks `logLineCount` alone, so an unchanged run costs no lines.
"""

from __future__ import annotations

from .documents import Document

PAGE_INFO = """
fragment PageInfoFields on PageInfo {
  endCursor
  hasNextPage
}
"""

ORG_INFO = Document("FetchOrgInfoFromEntity", """
query FetchOrgInfoFromEntity($entity: String!) {
  entity(name: $entity) {
    organization { ...OrgInfoFragment }
    user { organizations { ...OrgInfoFragment } }
  }
}

fragment OrgInfoFragment on Organization {
  name
  orgEntity { name }
}
""")

ORGANIZATION = Document("FetchOrganization", """
query FetchOrganization($org: String!) {
  organization(name: $org) {
    id
    name
    orgEntity { __typename id name entityType }
  }
}
""")

REGISTRIES = Document("FetchRegistries", """
query FetchRegistries($organization: String!, $filters: JSONString, $cursor: String, $perPage: Int, $order: String) {
  organization(name: $organization) {
    orgEntity {
      projects(filters: $filters, after: $cursor, first: $perPage, order: $order) {
        pageInfo { ...PageInfoFields }
        edges { node { ...RegistryFragment } }
      }
    }
  }
}

fragment RegistryFragment on Project {
  __typename
  id
  internalId
  name
  entity { name organization { name } }
  description
  createdAt
  updatedAt
  access
  allowAllArtifactTypes: allowAllArtifactTypesInRegistry
  artifactTypes(includeAll: true) { edges { node { name } } }
}
""" + PAGE_INFO)

REGISTRY_COLLECTIONS = Document("RegistryCollections", """
query RegistryCollections($organization: String!, $registryFilter: JSONString, $collectionFilter: JSONString,
                          $collectionTypes: [ArtifactCollectionType!] = [PORTFOLIO], $cursor: String, $perPage: Int,
                          $order: String) {
  organization(name: $organization) {
    orgEntity {
      name
      artifactCollections(projectFilters: $registryFilter, filters: $collectionFilter,
                          collectionTypes: $collectionTypes, after: $cursor, first: $perPage, order: $order) {
        totalCount
        pageInfo { ...PageInfoFields }
        edges {
          node {
            __typename
            id
            name
            description
            createdAt
            updatedAt
            project { name }
            type: defaultArtifactType { name }
            tags { edges { node { name } } }
          }
        }
      }
    }
  }
}
""" + PAGE_INFO)

REGISTRY_LINKS = Document("RegistryLinks", """
query RegistryLinks($organization: String!, $registryFilter: JSONString, $cursor: String, $perPage: Int) {
  organization(name: $organization) {
    orgEntity {
      artifactMemberships(projectFilters: $registryFilter, after: $cursor, first: $perPage) {
        pageInfo { ...PageInfoFields }
        edges {
          node {
            id
            versionIndex
            createdAt
            aliases { alias }
            artifactCollection { name project { name } }
            artifact { id versionIndex artifactSequence { name project { name entity { name } } } }
          }
        }
      }
    }
  }
}
""" + PAGE_INFO)

CONSOLE_COUNT = Document("RunConsoleLogCount", """
query RunConsoleLogCount($entity: String!, $project: String!, $runName: String!) {
  project(name: $project, entityName: $entity) { run(name: $runName) { logLineCount } }
}
""")

CONSOLE_TAIL = Document("RunConsoleLogTail", """
query RunConsoleLogTail($entity: String!, $project: String!, $runName: String!, $last: Int!) {
  project(name: $project, entityName: $entity) {
    run(name: $runName) {
      logLineCount
      logLines(last: $last) { edges { node { number timestamp level label line } } }
    }
  }
}
""")

CONSOLE_PAGE = Document("RunConsoleLogPage", """
query RunConsoleLogPage($entity: String!, $project: String!, $runName: String!, $first: Int, $after: String) {
  project(name: $project, entityName: $entity) {
    run(name: $runName) {
      logLineCount
      logLines(first: $first, after: $after, useImprovedPagination: true) {
        edges { node { number timestamp level label line } }
        pageInfo { endCursor hasNextPage }
      }
    }
  }
}
""")

TEAM_MEMBERS = Document("TeamMembers", """
query TeamMembers($name: String!) {
  entity(name: $name) {
    id
    name
    isTeam
    members { id admin pending email username name accountType }
  }
}
""")

INTEGRATIONS = Document("IntegrationsByEntity", """
query IntegrationsByEntity($entity: String!, $cursor: String, $perPage: Int) {
  entity(name: $entity) {
    integrations(after: $cursor, first: $perPage) {
      pageInfo { ...PageInfoFields }
      edges {
        node {
          __typename
          ... on SlackIntegration { id teamName channelName }
          ... on GenericWebhookIntegration { id name urlEndpoint }
        }
      }
    }
  }
}
""" + PAGE_INFO)

AUTOMATIONS = Document("GetEntityAutomations", """
query GetEntityAutomations($entity: String!, $cursor: String, $perPage: Int, $order: String, $filters: JSONString) {
  scope: entity(name: $entity) {
    triggers(after: $cursor, first: $perPage, order: $order, filters: $filters) {
      pageInfo { ...PageInfoFields }
      edges {
        node {
          __typename
          id
          createdAt
          updatedAt
          name
          description
          enabled
          scope {
            __typename
            ... on Project { id name }
            ... on ArtifactPortfolio { id name }
            ... on ArtifactSequence { id name }
            ... on Entity { id name entityType }
          }
          event: triggeringCondition { __typename eventType filter }
          action: triggeredAction {
            __typename
            ... on QueueJobTriggeredAction { queue { id name } template }
            ... on NotificationTriggeredAction { integration { id } title message severity }
            ... on GenericWebhookTriggeredAction { integration { id } requestPayload }
            ... on NoOpTriggeredAction { noOp }
            ... on ARIATriggeredAction { prompt }
          }
        }
      }
    }
  }
}
""" + PAGE_INFO)

ALL = (ORG_INFO, ORGANIZATION, REGISTRIES, REGISTRY_COLLECTIONS, REGISTRY_LINKS, CONSOLE_COUNT, CONSOLE_TAIL,
       CONSOLE_PAGE, TEAM_MEMBERS, INTEGRATIONS, AUTOMATIONS)
