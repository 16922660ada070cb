"""The GraphQL documents wandb-mirror sends: its own texts, in the shapes the official client sends.

Every document here validates against the SDL the project ships (wandb_mirror/server/schema.graphql,
tests/test_client_documents.py) and selects only fields the official client (wandb 0.31.0) selects,
except where a comment marked DEVIATION says what differs and why. Operation names are the
official ones, so a server's logs and a reader's expectations line up.

Documents whose shape depends on server features (protocol §2.5) are built by functions taking the
set of advertised feature names, mirroring what wandb-core's compat rewriting sends.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Document:
    name: str   # the operation name (sent as operationName)
    text: str


# ---------------------------------------------------------------------------------------------
# fragments
# ---------------------------------------------------------------------------------------------
PAGE_INFO = """
fragment PageInfoFragment on PageInfo {
  __typename
  endCursor
  hasNextPage
}
"""

PROJECT_INFO = """
fragment ProjectInfoFragment on Project {
  id
  internalId
  name
  entity {
    name
  }
}
"""

# DEVIATION: the official ProjectFragment selects `user { ...UserFragment }`, and UserFragment
# includes `apiKeys { ... }`. A mirror has no business reading anyone's API keys, so `user` is
# reduced to its public identity fields.
PROJECT_FRAGMENT = """
fragment ProjectFragment on Project {
  __typename
  id
  name
  entityName
  createdAt
  isBenchmark
  user {
    id
    name
    username
  }
}
"""

# The official RunFragment (runs.py:76-123) plus two change markers and the host.
# DEVIATION: `updatedAt` and `fileCount` are not selected by the official RunFragment (fileCount is,
# by RunFiles). They are the cheap per-run change markers the reconcile pass compares with the
# catalog, so that edits made after a run finished (summary, config, tags, notes, files) are found
# without a request per run.
# DEVIATION: `host` is in W&B's Run type and in run filters (api.py:1141-1154) but no official
# document selects it; a complete copy of the run's metadata needs it.
RUN_FRAGMENT = """
fragment RunFragment on Run {
  id
  tags
  name
  displayName
  sweepName
  state
  config
  group
  jobType
  commit
  host
  readOnly
  createdAt
  heartbeatAt
  updatedAt
  description
  notes
  systemMetrics
  summaryMetrics
  historyLineCount
  fileCount
  user {
    name
    username
  }
  historyKeys
}
"""

# The official LightweightRunFragment plus the same two markers (see RUN_FRAGMENT).
LIGHT_RUN_FRAGMENT = """
fragment LightweightRunFragment on Run {
  id
  tags
  name
  displayName
  sweepName
  state
  group
  jobType
  commit
  readOnly
  createdAt
  heartbeatAt
  updatedAt
  description
  notes
  historyLineCount
  fileCount
  user {
    name
    username
  }
}
"""

TAG_FRAGMENT = """
fragment TagFragment on Tag {
  __typename
  id
  name
}
"""

ALIAS_FRAGMENT = """
fragment ArtifactAliasFragment on ArtifactAlias {
  __typename
  id
  alias
}
"""

COLLECTION_INFO = """
fragment CollectionInfoFragment on ArtifactCollection {
  __typename
  name
  project {
    ...ProjectInfoFragment
  }
}
"""

SOURCE_COLLECTION_INFO = """
fragment SourceCollectionInfoFragment on ArtifactSequence {
  __typename
  name
  project {
    ...ProjectInfoFragment
  }
}
"""


def artifact_fragment(features: frozenset[str]) -> str:
    """The official ArtifactFragment; `digestAlgorithm` only when the server advertises
    ARTIFACT_DIGEST_ALGORITHM (wandb-core strips it otherwise, sdk/artifacts/_gqlutils.py)."""
    digest_alg = "  digestAlgorithm @include(if: true)\n" if "ARTIFACT_DIGEST_ALGORITHM" in features else ""
    return (
        """
fragment ArtifactFragment on Artifact {
  __typename
  id
  artifactSequence {
    ...SourceCollectionInfoFragment
  }
  versionIndex
  artifactType {
    name
  }
  description
  metadata
  ttlDurationSeconds
  ttlIsInherited
  tags {
    ...TagFragment
  }
  historyStep
  state
  size
  digest
"""
        + digest_alg
        + """  commitHash
  fileCount
  createdAt
  updatedAt
  aliases @include(if: $includeAliases) {
    artifactCollection {
      ...CollectionInfoFragment
    }
    ...ArtifactAliasFragment
  }
}
"""
        + SOURCE_COLLECTION_INFO + PROJECT_INFO + TAG_FRAGMENT + COLLECTION_INFO + ALIAS_FRAGMENT
    )


# ---------------------------------------------------------------------------------------------
# viewer, features, projects
# ---------------------------------------------------------------------------------------------
# wandb-core's Viewer (query_viewer.graphql) plus `name` and `admin`, which the official GetViewer's
# UserFragment selects too: the mirror keeps the user's display name.
VIEWER = Document("Viewer", """
query Viewer {
  viewer {
    id
    entity
    username
    name
    email
    admin
    flags
    teams {
      edges {
        node {
          name
        }
      }
    }
  }
}
""")

SERVER_FEATURES = Document("ServerFeaturesQuery", """
query ServerFeaturesQuery {
  serverInfo {
    features {
      name
      isEnabled
    }
  }
}
""")

GET_PROJECTS = Document("GetProjects", """
query GetProjects($entity: String, $cursor: String, $perPage: Int = 50) {
  models(entityName: $entity, after: $cursor, first: $perPage) {
    pageInfo {
      ...PageInfoFragment
    }
    edges {
      node {
        ...ProjectFragment
      }
    }
  }
}
""" + PAGE_INFO + PROJECT_FRAGMENT)

GET_PROJECT = Document("GetProject", """
query GetProject($name: String!, $entity: String!) {
  project(name: $name, entityName: $entity) {
    ...ProjectFragment
  }
}
""" + PROJECT_FRAGMENT)

# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
_RUNS = """
query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50, $order: String, $filters: JSONString) {
  project(name: $project, entityName: $entity) {
    internalId
    runCount(filters: $filters)
    readOnly
    runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
      edges {
        node {
          projectId
          ...FRAGMENT
        }
        cursor
      }
      pageInfo {
        endCursor
        hasNextPage
      }
    }
  }
}
"""

RUNS_FULL = Document("Runs", _RUNS.replace("FRAGMENT", "RunFragment") + RUN_FRAGMENT)
RUNS_LIGHT = Document("Runs", _RUNS.replace("FRAGMENT", "LightweightRunFragment") + LIGHT_RUN_FRAGMENT)

RUN = Document("Run", """
query Run($project: String!, $entity: String!, $name: String!) {
  project(name: $project, entityName: $entity) {
    run(name: $name) {
      projectId
      ...RunFragment
    }
  }
}
""" + RUN_FRAGMENT)

# scan_history's live path (wandb-core livedata.go, and the pure-Python client up to 0.27):
# minStep inclusive, maxStep exclusive, samples = the window size, so nothing is sampled away.
HISTORY_PAGE = Document("HistoryPage", """
query HistoryPage($entity: String!, $project: String!, $run: String!, $minStep: Int64!, $maxStep: Int64!, $pageSize: Int!) {
  project(name: $project, entityName: $entity) {
    run(name: $run) {
      history(minStep: $minStep, maxStep: $maxStep, samples: $pageSize)
    }
  }
}
""")

# scan_history's first question (wandb-core query_parquethistory.graphql): the run's exported
# Parquet files (presigned URLs) and the steps not exported yet.
RUN_PARQUET_HISTORY = Document("RunParquetHistory", """
query RunParquetHistory($entity: String!, $project: String!, $runName: String!, $liveKeys: [String!]!) {
  project(name: $project, entityName: $entity) {
    run(name: $runName) {
      parquetHistory(liveKeys: $liveKeys) {
        parquetUrls
        liveData
      }
    }
  }
}
""")

# Run.history(stream="system"): the only way the public API exposes system-metric rows.
RUN_EVENTS = Document("RunFullHistory", """
query RunFullHistory($project: String!, $entity: String!, $name: String!, $samples: Int) {
  project(name: $project, entityName: $entity) {
    run(name: $name) {
      events(samples: $samples)
    }
  }
}
""")

RUN_FILES = Document("RunFiles", """
query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String, $fileLimit: Int = 50, $fileNames: [String] = [], $upload: Boolean = false, $pattern: String) {
  project(name: $project, entityName: $entity) {
    internalId
    run(name: $name) {
      fileCount
      ...RunFilesFragment
    }
  }
}

fragment RunFilesFragment on Run {
  files(names: $fileNames, after: $fileCursor, first: $fileLimit, pattern: $pattern) {
    edges {
      node {
        id
        name
        url(upload: $upload)
        directUrl
        sizeBytes
        mimetype
        updatedAt
        md5
      }
      cursor
    }
    pageInfo {
      endCursor
      hasNextPage
    }
  }
}
""")


# ---------------------------------------------------------------------------------------------
# artifacts
# ---------------------------------------------------------------------------------------------
def run_artifacts(direction: str, features: frozenset[str]) -> Document:
    """RunOutputArtifacts (direction "output") or RunInputArtifacts ("input")."""
    field, name = ("outputArtifacts", "RunOutputArtifacts") if direction == "output" else (
        "inputArtifacts", "RunInputArtifacts")
    return Document(name, """
query NAME($entity: String!, $project: String!, $run: String!, $cursor: String, $perPage: Int, $includeAliases: Boolean = true) {
  project(entityName: $entity, name: $project) {
    run(name: $run) {
      artifacts: FIELD(after: $cursor, first: $perPage) {
        totalCount
        pageInfo {
          ...PageInfoFragment
        }
        edges {
          node {
            ...ArtifactFragment
          }
        }
      }
    }
  }
}
""".replace("NAME", name).replace("FIELD", field) + PAGE_INFO + artifact_fragment(features))


def project_artifacts(features: frozenset[str]) -> Document:
    """Every version of one collection (Api.artifacts / artifact_versions)."""
    return Document("ProjectArtifacts", """
query ProjectArtifacts($entity: String!, $project: String!, $type: String!, $collection: String!, $cursor: String, $perPage: Int = 50, $order: String, $filters: JSONString, $includeAliases: Boolean = true) {
  project(entityName: $entity, name: $project) {
    artifactType(name: $type) {
      artifactCollection(name: $collection) {
        __typename
        artifacts(after: $cursor, first: $perPage, order: $order, filters: $filters) {
          totalCount
          pageInfo {
            ...PageInfoFragment
          }
          edges {
            version
            node {
              ...ArtifactFragment
            }
          }
        }
      }
    }
  }
}
""" + PAGE_INFO + artifact_fragment(features))


PROJECT_ARTIFACT_TYPES = Document("ProjectArtifactTypes", """
query ProjectArtifactTypes($entity: String!, $project: String!, $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    artifactTypes(after: $cursor, first: $perPage) {
      edges {
        node {
          ...ArtifactTypeFragment
        }
      }
      pageInfo {
        ...PageInfoFragment
      }
    }
  }
}

fragment ArtifactTypeFragment on ArtifactType {
  __typename
  id
  name
  description
  createdAt
}
""" + PAGE_INFO)


def artifact_type_collections(features: frozenset[str]) -> Document:
    """Collections of one artifact type. Without ARTIFACT_COLLECTIONS_FILTERING_SORTING the
    official client strips `$filters` and `totalCount` (artifacts.py:484-508); so do we. We never
    filter, so `$filters` is left out in both shapes (an unused declared variable is invalid)."""
    total = "        totalCount\n" if "ARTIFACT_COLLECTIONS_FILTERING_SORTING" in features else ""
    return Document("ArtifactTypeArtifactCollections", """
query ArtifactTypeArtifactCollections($entity: String!, $project: String!, $type: String!, $cursor: String, $perPage: Int, $order: String) {
  project(entityName: $entity, name: $project) {
    artifactType(name: $type) {
      artifactCollections(after: $cursor, first: $perPage, order: $order) {
""" + total + """        pageInfo {
          ...PageInfoFragment
        }
        edges {
          node {
            __typename
            ...ArtifactCollectionFragment
          }
        }
      }
    }
  }
}

fragment ArtifactCollectionFragment on ArtifactCollection {
  __typename
  id
  name
  description
  createdAt
  updatedAt
  project {
    ...ProjectInfoFragment
  }
  type: defaultArtifactType {
    name
  }
  tags {
    edges {
      node {
        ...TagFragment
      }
    }
  }
}
""" + PAGE_INFO + PROJECT_INFO + TAG_FRAGMENT)


FETCH_ARTIFACT_MANIFEST = Document("FetchArtifactManifest", """
query FetchArtifactManifest($id: ID!) {
  artifact(id: $id) {
    currentManifest {
      ...DeferredManifestFragment
    }
  }
}

fragment DeferredManifestFragment on ArtifactManifest {
  file {
    directUrl
  }
}
""")

ARTIFACT_FILE_URLS = Document("GetArtifactMembershipFileUrls", """
query GetArtifactMembershipFileUrls($entity: String!, $project: String!, $collection: String!, $alias: String!, $cursor: String, $perPage: Int) {
  project(name: $project, entityName: $entity) {
    artifactCollection(name: $collection) {
      __typename
      artifactMembership(aliasName: $alias) {
        files(after: $cursor, first: $perPage) {
          pageInfo {
            ...PageInfoFragment
          }
          edges {
            node {
              ...FileWithUrlFragment
            }
          }
        }
      }
    }
  }
}

fragment FileWithUrlFragment on File {
  __typename
  name
  directUrl
}
""" + PAGE_INFO)

# ---------------------------------------------------------------------------------------------
# sweeps, reports
# ---------------------------------------------------------------------------------------------
SWEEP_FRAGMENT = """
fragment SweepFragment on Sweep {
  __typename
  id
  name
  displayName
  method
  state
  description
  bestLoss
  config
  createdAt
  updatedAt
  runCount
  runCountExpected
}
"""


def get_sweeps(features: frozenset[str]) -> Document:
    """Project.sweeps(). Without SWEEPS_QUERY_FILTERING wandb-core drops `$filters` (sweeps.py:106-147)."""
    if "SWEEPS_QUERY_FILTERING" in features:
        head = "query GetSweeps($project: String!, $entity: String!, $filters: JSONString!, $cursor: String, $perPage: Int = 50) {"
        call = "sweeps(after: $cursor, first: $perPage, filters: $filters)"
    else:
        head = "query GetSweeps($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50) {"
        call = "sweeps(after: $cursor, first: $perPage)"
    return Document("GetSweeps", "\n" + head + """
  project(name: $project, entityName: $entity) {
    totalSweeps
    """ + call + """ {
      pageInfo {
        ...PageInfoFragment
      }
      edges {
        node {
          ...SweepFragment
        }
      }
    }
  }
}
""" + PAGE_INFO + SWEEP_FRAGMENT)


PROJECT_VIEWS = Document("ProjectViews", """
query ProjectViews($project: String!, $entity: String!, $reportCursor: String, $reportLimit: Int!, $viewType: String = "runs", $viewName: String) {
  project(name: $project, entityName: $entity) {
    allViews(viewType: $viewType, viewName: $viewName, first: $reportLimit, after: $reportCursor) {
      edges {
        node {
          id
          name
          displayName
          description
          user {
            username
            photoUrl
            email
          }
          spec
          updatedAt
          createdAt
        }
        cursor
      }
      pageInfo {
        endCursor
        hasNextPage
      }
    }
  }
}
""")


def all_documents(features: frozenset[str] = frozenset()) -> list[Document]:
    """Every document in every feature-dependent shape (for the validation test)."""
    out = [VIEWER, SERVER_FEATURES, GET_PROJECTS, GET_PROJECT, RUNS_FULL, RUNS_LIGHT, RUN, HISTORY_PAGE,
           RUN_PARQUET_HISTORY, RUN_EVENTS, RUN_FILES, PROJECT_ARTIFACT_TYPES, FETCH_ARTIFACT_MANIFEST, ARTIFACT_FILE_URLS, PROJECT_VIEWS]
    for feats in (frozenset(), frozenset({"ARTIFACT_DIGEST_ALGORITHM", "ARTIFACT_COLLECTIONS_FILTERING_SORTING",
                                          "SWEEPS_QUERY_FILTERING"})):
        out += [run_artifacts("output", feats), run_artifacts("input", feats), project_artifacts(feats),
                artifact_type_collections(feats), get_sweeps(feats)]
    return out
