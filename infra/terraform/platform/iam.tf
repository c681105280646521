# One service account per function, each granted only what its code does:
#
#   api          publish train-requests + train-submissions; Firestore; read the api-tokens secret
#   launcher     Firestore (queued -> submitting -> submitted); publish training-events; submit Vertex
#                CustomJobs as the trainer SA; read the kubeconfig and HF token secrets (the HF token
#                goes into the per-job Kubernetes Secret when a request brings none)
#   status_sync  Firestore
#   submit       Firestore; publish train-requests + train-submissions-rejected
#   reconcile    Firestore; publish training-events; read Vertex jobs; read the kubeconfig secret;
#                publish job-transitions (the outbox relay) and sign due webhook retries
#   notify       Firestore; read the webhook signing secret (it calls subscribers' URLs, no GCP API)
# launcher and status_sync also publish job-transitions: they relay the outbox after their commits; the
# api, notify and reconcile read the webhook signing secret (the api to accept a request's webhooks and
# to seal the studio's callback tokens, notify to unseal them). launcher, status_sync and reconcile
# manage the Vertex per-job secrets `training-job-*` (created at submit, deleted when the job ends), which
# the trainer SA reads; both grants are conditioned on that name.
#
# Firestore grants are conditioned on the platform's database. Kubernetes permissions are not IAM: the
# kubeconfig's user is the `training-launcher` service account, bound by infra/k8s/rbac.yaml to
# jobs/secrets in the training namespace only.

locals {
  function_accounts = {
    api         = "API: validates requests, writes jobs, publishes"
    launcher    = "Launcher: submits jobs to Kubernetes / Vertex"
    status_sync = "Status sync: applies training events to the store"
    submit      = "Submit: expands batch submissions into jobs"
    reconcile   = "Reconcile: polls backends and fixes drift"
    notify      = "Notify: delivers signed webhooks of job transitions"
  }

  firestore_users = keys(local.function_accounts)

  topic_publishers = {
    "api/train_requests"                = { fn = "api", topic = "train_requests" }
    "api/train_submissions"             = { fn = "api", topic = "train_submissions" }
    "launcher/training_events"          = { fn = "launcher", topic = "training_events" }
    "submit/train_requests"             = { fn = "submit", topic = "train_requests" }
    "submit/train_submissions_rejected" = { fn = "submit", topic = "train_submissions_rejected" }
    "reconcile/training_events"         = { fn = "reconcile", topic = "training_events" }
    "launcher/job_transitions"          = { fn = "launcher", topic = "job_transitions" }
    "status_sync/job_transitions"       = { fn = "status_sync", topic = "job_transitions" }
    "reconcile/job_transitions"         = { fn = "reconcile", topic = "job_transitions" }
  }

  webhook_signers = ["api", "notify", "reconcile"]

  kubeconfig_readers = var.kubernetes_enabled ? ["launcher", "reconcile"] : []
}

resource "google_service_account" "fn" {
  for_each = local.function_accounts

  project      = var.project_id
  account_id   = "training-${replace(each.key, "_", "-")}"
  display_name = "Training platform ${each.value}"
}

resource "google_project_iam_member" "firestore_user" {
  for_each = toset(local.firestore_users)

  project = var.project_id
  role    = "roles/datastore.user"
  member  = google_service_account.fn[each.value].member

  condition {
    title       = "platform-database-only"
    description = "Only the training platform's Firestore database."
    expression  = "resource.name == \"projects/${var.project_id}/databases/${var.firestore_database}\" || resource.name.startsWith(\"projects/${var.project_id}/databases/${var.firestore_database}/\")"
  }
}

resource "google_pubsub_topic_iam_member" "publishers" {
  for_each = local.topic_publishers

  project = var.project_id
  topic   = google_pubsub_topic.topics[each.value.topic].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.fn[each.value.fn].member
}

resource "google_secret_manager_secret_iam_member" "api_tokens" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.api_tokens.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn["api"].member
}

resource "google_secret_manager_secret_iam_member" "kubeconfig" {
  for_each = toset(local.kubeconfig_readers)

  project   = var.project_id
  secret_id = google_secret_manager_secret.kubeconfig[0].secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.value].member
}

resource "google_secret_manager_secret_iam_member" "hf_token_launcher" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.hf_token.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn["launcher"].member
}

# Vertex: create/cancel CustomJobs (aiplatform.user has no narrower predefined role for CustomJobs),
# running as the trainer SA (actAs on that SA only).
resource "google_project_iam_member" "launcher_vertex" {
  project = var.project_id
  role    = "roles/aiplatform.user"
  member  = google_service_account.fn["launcher"].member
}

resource "google_service_account_iam_member" "launcher_acts_as_trainer" {
  service_account_id = google_service_account.trainer.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.fn["launcher"].member
}

resource "google_project_iam_member" "reconcile_vertex" {
  project = var.project_id
  role    = "roles/aiplatform.viewer"
  member  = google_service_account.fn["reconcile"].member
}

# Vertex per-job secrets (shared/adapters/vertex_backend.py): the launcher creates `training-job-<id>`
# with the job's secret variables, status_sync and reconcile delete it when the job ends, the trainer
# reads it. Each grant is limited by an IAM condition to secrets of that name, never the project's others.
locals {
  job_secret_prefix = "projects/${local.project_number}/secrets/training-job-"
}

resource "google_project_iam_member" "job_secrets_admin" {
  for_each = toset(["launcher", "status_sync", "reconcile"])
  project  = var.project_id
  role     = "roles/secretmanager.admin"
  member   = google_service_account.fn[each.value].member
  condition {
    title       = "per-job-secrets-only"
    description = "Only the platform's per-job secrets (training-job-*)."
    expression  = "resource.name.startsWith(\"${local.job_secret_prefix}\")"
  }
}

resource "google_project_iam_member" "job_secrets_trainer" {
  project = var.project_id
  role    = "roles/secretmanager.secretAccessor"
  member  = google_service_account.trainer.member
  condition {
    title       = "per-job-secrets-only"
    description = "Only the platform's per-job secrets (training-job-*)."
    expression  = "resource.name.startsWith(\"${local.job_secret_prefix}\")"
  }
}

# --- The trainer: identity of Vertex CustomJobs -------------------------------------------------------
resource "google_service_account" "trainer" {
  project      = var.project_id
  account_id   = "training-trainer"
  display_name = "Training platform trainer (Vertex CustomJobs)"
}

resource "google_storage_bucket_iam_member" "trainer_data" {
  bucket = google_storage_bucket.data.name
  role   = "roles/storage.objectUser"
  member = google_service_account.trainer.member
}

resource "google_secret_manager_secret_iam_member" "hf_token_trainer" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.hf_token.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.trainer.member
}

resource "google_artifact_registry_repository_iam_member" "trainer_pull" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.trainer.member
}

resource "google_project_iam_member" "trainer_logs" {
  project = var.project_id
  role    = "roles/logging.logWriter"
  member  = google_service_account.trainer.member
}

# --- The cluster watcher, for clusters outside GKE (GKE binds its own workload identity) -------------
resource "google_service_account" "watcher" {
  project      = var.project_id
  account_id   = "training-watcher"
  display_name = "Training platform cluster watcher (publishes training-events)"
}

resource "google_pubsub_topic_iam_member" "watcher_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topics["training_events"].name
  role    = "roles/pubsub.publisher"
  member  = google_service_account.watcher.member
}

# --- Invokers ------------------------------------------------------------------------------------------
resource "google_service_account" "push" {
  project      = var.project_id
  account_id   = "training-push"
  display_name = "Training platform Pub/Sub push invoker"
}

# The Pub/Sub service agent mints the push subscriptions' OIDC tokens as training-push.
resource "google_service_account_iam_member" "pubsub_token_creator" {
  service_account_id = google_service_account.push.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}

resource "google_service_account" "scheduler" {
  project      = var.project_id
  account_id   = "training-scheduler"
  display_name = "Training platform Cloud Scheduler invoker (reconcile)"
}

# --- Builds --------------------------------------------------------------------------------------------
# Cloud Functions builds each revision with this account instead of the project's default compute SA.
resource "google_service_account" "fn_build" {
  project      = var.project_id
  account_id   = "training-fn-build"
  display_name = "Training platform Cloud Functions build"
}

resource "google_project_iam_member" "fn_build" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/artifactregistry.writer",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.fn_build.member
}

resource "google_project_iam_member" "fn_build_sources" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.fn_build.member

  condition {
    title       = "function-sources-only"
    description = "Our sources bucket and the gcf-v2-sources buckets gcloud uploads to."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${google_storage_bucket.sources.name}\") || resource.name.startsWith(\"projects/_/buckets/gcf-v2-sources-${local.project_number}-\")"
  }
}

# cloudbuild.yaml runs as this account: tests, image push, function deploys.
resource "google_service_account" "ci" {
  project      = var.project_id
  account_id   = "training-ci"
  display_name = "Training platform Cloud Build (cloudbuild.yaml)"
}

resource "google_project_iam_member" "ci" {
  for_each = toset([
    "roles/cloudfunctions.developer",
    "roles/logging.logWriter",
  ])

  project = var.project_id
  role    = each.value
  member  = google_service_account.ci.member
}

resource "google_artifact_registry_repository_iam_member" "ci_push" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = google_service_account.ci.member
}

# `gcloud builds submit --service-account` stages the source in gs://<project>_cloudbuild.
resource "google_project_iam_member" "ci_build_source" {
  project = var.project_id
  role    = "roles/storage.objectViewer"
  member  = google_service_account.ci.member

  condition {
    title       = "cloudbuild-source-only"
    description = "The bucket gcloud builds submit uploads the source to."
    expression  = "resource.name.startsWith(\"projects/_/buckets/${var.project_id}_cloudbuild\")"
  }
}

# gcloud functions deploy uploads the staged source to the gcf-v2-uploads bucket through a signed URL
# and needs actAs on each function's runtime SA and on the build SA.
resource "google_service_account_iam_member" "ci_acts_as" {
  for_each = merge(
    { for k, sa in google_service_account.fn : k => sa.name },
    { fn_build = google_service_account.fn_build.name },
  )

  service_account_id = each.value
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.ci.member
}

resource "google_secret_manager_secret_iam_member" "webhook_signing" {
  for_each  = toset(local.webhook_signers)
  project   = var.project_id
  secret_id = google_secret_manager_secret.webhook_signing.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.fn[each.value].member
}
