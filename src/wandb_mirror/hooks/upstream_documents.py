"""The GraphQL documents the upstream writer sends and reads, in the shapes the official client uses
(the provenance of each is in hooks/upstream.py's docstring)."""

from ..client.documents import Document

SUMMARY_MUTATION = Document("UpsertBucket", """
        mutation UpsertBucket( $id: String, $summaryMetrics: JSONString) {
            upsertBucket(input: { id: $id, summaryMetrics: $summaryMetrics}) {
                bucket { id }
            }
        }
        """)

# wandb-core's run upsert (mutation_run.graphql): every variable nullable, so we can send only one.
RUN_UPSERT_MUTATION = Document("UpsertBucket", """mutation UpsertBucket(
            $id: String,
            $name: String,
            $project: String,
            $entity: String,
            $groupName: String,
            $description: String,
            $displayName: String,
            $notes: String,
            $commit: String,
            $config: JSONString,
            $host: String,
            $debug: Boolean,
            $program: String,
            $repo: String,
            $jobType: String,
            $state: String,
            $sweep: String,
            $tags: [String!],
            $summaryMetrics: JSONString,
        ) {
            upsertBucket(input: {
                id: $id,
                name: $name,
                groupName: $groupName,
                modelName: $project,
                entityName: $entity,
                description: $description,
                displayName: $displayName,
                notes: $notes,
                config: $config,
                commit: $commit,
                host: $host,
                debug: $debug,
                jobProgram: $program,
                jobRepo: $repo,
                jobType: $jobType,
                state: $state,
                sweep: $sweep,
                tags: $tags,
                summaryMetrics: $summaryMetrics,
            }) {
                bucket {
                    id
                    name
                    displayName
                    description
                    config
                    sweepName
                    project {
                        id
                        name
                        entity {
                            id
                            name
                        }
                    }
                    historyLineCount
                }
                inserted
            }
        }
""")

DELETE_FILES_MUTATION = Document("deleteFiles", """
            mutation deleteFiles($files: [ID!]!, $projectId: Int) {
                deleteFiles(input: {
                    files: $files
                    projectId: $projectId
                }) {
                    success
                }
            }
        """)

ADD_ALIASES_MUTATION = Document("AddAliases", """
mutation AddAliases($input: AddAliasesInput!) {
  result: addAliases(input: $input) {
    success
  }
}
""")

DELETE_ALIASES_MUTATION = Document("DeleteAliases", """
mutation DeleteAliases($input: DeleteAliasesInput!) {
  result: deleteAliases(input: $input) {
    success
  }
}
""")


# The fields a read-modify-write needs, in the shape of the official client's `Run` query
# (a subset of its RunFragment).
RUN_STATE_QUERY = Document("RunState", """
query RunState($project: String!, $entity: String!, $name: String!) {
    project(name: $project, entityName: $entity) {
        run(name: $name) {
            id
            tags
            notes
            config
            summaryMetrics
        }
    }
}
""")


# What a settle or a pre-write check needs to know about a file or an artifact version.
RUN_FILE_QUERY = Document("RunFiles", """
query RunFiles($project: String!, $entity: String!, $name: String!, $fileNames: [String]) {
    project(name: $project, entityName: $entity) {
        run(name: $name) {
            files(names: $fileNames) { edges { node { id name md5 } } }
        }
    }
}
""")

ARTIFACT_ALIASES_QUERY = Document("ArtifactAliases", """
query ArtifactAliases($id: ID!) {
    artifact(id: $id) { id aliases { alias } }
}
""")
