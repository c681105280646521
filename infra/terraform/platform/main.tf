# Control plane of the training platform: APIs, storage, registry, secrets and Firestore.
# Pub/Sub lives in pubsub.tf, identities in iam.tf, the functions in functions.tf.

data "google_project" "this" {
  project_id = var.project_id
}

locals {
  project_number = data.google_project.this.number
  data_bucket    = var.data_bucket_name != "" ? var.data_bucket_name : "${var.project_id}-training-data"
  registry_host  = "${var.region}-docker.pkg.dev"
  image_repo     = "${local.registry_host}/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
  trainer_image  = "${local.image_repo}/trainer:${var.trainer_image_tag}"
  pubsub_agent   = "serviceAccount:service-${local.project_number}@gcp-sa-pubsub.iam.gserviceaccount.com"

  # Topic names are a contract with the code (shared/settings.py reads them from TOPIC_*).
  topics = {
    train_requests             = "train-requests"
    training_events            = "training-events"
    train_submissions          = "train-submissions"
    train_submissions_rejected = "train-submissions-rejected"
    job_transitions            = "job-transitions"
  }
  # Topics consumed by a function get a dead-letter topic "<topic>-dead-letter".
  dead_lettered = keys(local.push_subscriptions) # pubsub_subscriptions.json
}

resource "google_project_service" "apis" {
  for_each = toset([
    "aiplatform.googleapis.com",
    "artifactregistry.googleapis.com",
    "cloudbuild.googleapis.com",
    "cloudfunctions.googleapis.com",
    "cloudscheduler.googleapis.com",
    "firestore.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "logging.googleapis.com",
    "pubsub.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "storage.googleapis.com",
  ])
  project            = var.project_id
  service            = each.value
  disable_on_destroy = false
}

# Datasets and trained models. Training pods (workload identity) and Vertex jobs (trainer SA) read and
# write here; nothing is public.
resource "google_storage_bucket" "data" {
  name                        = local.data_bucket
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      num_newer_versions = 3
      with_state         = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

# Zipped function sources (Terraform's first deployment; cloudbuild.yaml deploys later revisions).
resource "google_storage_bucket" "sources" {
  name                        = "${var.project_id}-training-fn-sources"
  project                     = var.project_id
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = var.labels

  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      age = 30
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.artifact_registry_repository
  format        = "DOCKER"
  description   = "Trainer image and the api/watcher image of the training platform."
  labels        = var.labels

  cleanup_policy_dry_run = false
  cleanup_policies {
    id     = "keep-recent"
    action = "KEEP"
    most_recent_versions {
      keep_count = 20
    }
  }
  cleanup_policies {
    id     = "delete-old-untagged"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}

# Secrets: the containers only. Their values are added with `gcloud secrets versions add` (docs/deploy.md)
# so that no token ever lands in Terraform state.
resource "google_secret_manager_secret" "hf_token" {
  project   = var.project_id
  secret_id = "training-hf-token"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# The Standard Webhooks signing secret (`whsec_` + base64), read by the functions that sign deliveries.
resource "google_secret_manager_secret" "webhook_signing" {
  project   = var.project_id
  secret_id = "training-webhook-signing-secret"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_secret_manager_secret" "api_tokens" {
  project   = var.project_id
  secret_id = "training-api-tokens"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

# A kubeconfig whose user is the in-cluster `training-launcher` service account token
# (infra/scripts/make_launcher_kubeconfig.sh): the same mechanism for GKE, EKS, AKS and CoreWeave.
resource "google_secret_manager_secret" "kubeconfig" {
  count     = var.kubernetes_enabled ? 1 : 0
  project   = var.project_id
  secret_id = "training-kubeconfig"
  labels    = var.labels

  replication {
    auto {}
  }

  depends_on = [google_project_service.apis]
}

resource "google_firestore_database" "main" {
  project                           = var.project_id
  name                              = var.firestore_database
  location_id                       = var.firestore_location
  type                              = "FIRESTORE_NATIVE"
  concurrency_mode                  = "PESSIMISTIC"
  point_in_time_recovery_enablement = "POINT_IN_TIME_RECOVERY_ENABLED"
  delete_protection_state           = "DELETE_PROTECTION_ENABLED"
  deletion_policy                   = "ABANDON"

  depends_on = [google_project_service.apis]
}

locals {
  # The store declares the composite indexes its queries need in infra/firestore/indexes.json (Firebase
  # format); one google_firestore_index per entry, keyed by its shape so reordering the file is a no-op.
  firestore_indexes = {
    for idx in jsondecode(file("${path.module}/${var.firestore_indexes_file}")).indexes :
    "${idx.collectionGroup}/${lower(try(idx.queryScope, "COLLECTION"))}/${join(",", [for f in idx.fields : "${f.fieldPath}:${lower(try(f.order, f.arrayConfig))}"])}" => idx
  }
}

resource "google_firestore_index" "store" {
  for_each = local.firestore_indexes

  project     = var.project_id
  database    = google_firestore_database.main.name
  collection  = each.value.collectionGroup
  query_scope = try(each.value.queryScope, "COLLECTION")

  dynamic "fields" {
    for_each = each.value.fields
    content {
      field_path   = fields.value.fieldPath
      order        = try(fields.value.order, null)
      array_config = try(fields.value.arrayConfig, null)
    }
  }
}
