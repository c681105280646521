# Cloud Functions gen2 (python311), all built from the one folder staged by
# infra/scripts/stage_functions.sh. Terraform owns their configuration; cloudbuild.yaml deploys new code
# (hence ignore_changes on the source).

locals {
  functions = {
    api = {
      name        = "training-api"
      entry_point = "api"
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 60
      concurrency = 8 # functions-framework serves 8 threads per instance
      min         = var.api_min_instances
      # The studio calls it over the internet; only its service account may invoke (see below).
      ingress = "ALLOW_ALL"
    }
    launcher = {
      name        = "training-launcher"
      entry_point = "launcher"
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 300
      concurrency = 1
      min         = 0
      ingress     = "ALLOW_INTERNAL_ONLY" # Pub/Sub push from this project counts as internal
    }
    status_sync = {
      name        = "training-status-sync"
      entry_point = "status_sync"
      memory      = "512Mi"
      cpu         = "1"
      timeout     = 60
      concurrency = 4
      min         = 0
      ingress     = "ALLOW_INTERNAL_ONLY"
    }
    submit = {
      name        = "training-submit"
      entry_point = "submit"
      memory      = "512Mi"
      cpu         = "1"
      timeout     = 300
      concurrency = 1
      min         = 0
      ingress     = "ALLOW_INTERNAL_ONLY"
    }
    notify = {
      name        = "training-notify"
      entry_point = "notify"
      memory      = "512Mi"
      cpu         = "1"
      timeout     = 60
      concurrency = 8 # deliveries wait on subscribers: I/O bound
      min         = 0
      ingress     = "ALLOW_INTERNAL_ONLY"
    }
    reconcile = {
      name        = "training-reconcile"
      entry_point = "reconcile"
      memory      = "1Gi"
      cpu         = "1"
      timeout     = 540
      concurrency = 1
      min         = 0
      ingress     = "ALLOW_INTERNAL_ONLY" # Cloud Scheduler from this project counts as internal
    }
  }

  kubeconfig_mount = "/secrets/kubeconfig"

  common_env = {
    GOOGLE_CLOUD_PROJECT             = var.project_id
    STORE_KIND                       = "firestore"
    BUS_KIND                         = "pubsub"
    FIRESTORE_DATABASE               = var.firestore_database
    TOPIC_TRAIN_REQUESTS             = local.topics.train_requests
    TOPIC_TRAINING_EVENTS            = local.topics.training_events
    TOPIC_TRAIN_SUBMISSIONS          = local.topics.train_submissions
    TOPIC_TRAIN_SUBMISSIONS_REJECTED = local.topics.train_submissions_rejected
    DEFAULT_TRAINING_BACKEND         = var.default_training_backend
    MAX_LOG_CHARS                    = tostring(var.max_log_chars)
    CORS_ORIGINS                     = var.cors_origins
    LOG_EXECUTION_ID                 = "true"
  }

  # Backend settings: read by the launcher (submit/cancel) and reconcile (poll); harmless elsewhere,
  # and the api's /health reports which backends are configured. No secret values here.
  backend_env = merge(
    {
      VERTEX_PROJECT           = var.project_id
      VERTEX_REGION            = var.vertex_region
      VERTEX_IMAGE_URI         = local.trainer_image
      VERTEX_MACHINE_TYPE      = var.vertex_machine_type
      VERTEX_ACCELERATOR_TYPE  = var.vertex_accelerator_type
      VERTEX_ACCELERATOR_COUNT = tostring(var.vertex_accelerator_count)
      VERTEX_REPLICA_COUNT     = tostring(var.vertex_replica_count)
      VERTEX_SERVICE_ACCOUNT   = google_service_account.trainer.email
      VERTEX_NETWORK           = var.vertex_network
      VERTEX_SUBMIT            = "1"
      VERTEX_HF_TOKEN_SECRET   = "${google_secret_manager_secret.hf_token.id}/versions/latest"
    },
    var.kubernetes_enabled ? {
      K8S_TRAINING_IMAGE             = local.trainer_image
      K8S_NAMESPACE                  = var.k8s_namespace
      K8S_SERVICE_ACCOUNT            = var.k8s_service_account
      K8S_APPLY                      = "1"
      K8S_KUBECONFIG                 = "${local.kubeconfig_mount}/kubeconfig"
      K8S_NODE_SELECTOR              = var.k8s_node_selector
      K8S_TOLERATIONS                = var.k8s_tolerations
      K8S_RESOURCE_LIMITS            = var.k8s_resource_limits
      K8S_IMAGE_PULL_SECRETS         = var.k8s_image_pull_secrets
      K8S_BACKOFF_LIMIT              = tostring(var.k8s_backoff_limit)
      K8S_TTL_SECONDS_AFTER_FINISHED = tostring(var.k8s_ttl_seconds_after_finished)
    } : {},
  )

  # Empty strings are dropped: pydantic-settings would otherwise parse "" for JSON/number fields.
  function_env = { for k, v in merge(local.common_env, local.backend_env) : k => v if v != "" }
}

data "archive_file" "functions" {
  count = var.deploy_functions ? 1 : 0

  type        = "zip"
  source_dir  = "${path.module}/${var.functions_source_dir}"
  output_path = "${path.module}/.build/functions.zip"
  excludes    = ["**/__pycache__/**", "**/*.pyc"]
}

resource "google_storage_bucket_object" "functions" {
  count = var.deploy_functions ? 1 : 0

  name   = "functions/${data.archive_file.functions[0].output_md5}.zip"
  bucket = google_storage_bucket.sources.name
  source = data.archive_file.functions[0].output_path
}

resource "google_cloudfunctions2_function" "fn" {
  for_each = var.deploy_functions ? local.functions : {}

  project     = var.project_id
  location    = var.region
  name        = each.value.name
  description = "Training platform: ${local.function_accounts[each.key]}"
  labels      = var.labels

  build_config {
    runtime         = "python311"
    entry_point     = each.value.entry_point
    service_account = google_service_account.fn_build.id

    source {
      storage_source {
        bucket = google_storage_bucket.sources.name
        object = google_storage_bucket_object.functions[0].name
      }
    }
  }

  service_config {
    available_memory                 = each.value.memory
    available_cpu                    = each.value.cpu
    timeout_seconds                  = each.value.timeout
    max_instance_request_concurrency = each.value.concurrency
    min_instance_count               = each.value.min
    max_instance_count               = var.function_max_instances
    ingress_settings                 = each.value.ingress
    all_traffic_on_latest_revision   = true
    service_account_email            = google_service_account.fn[each.key].email
    environment_variables            = local.function_env

    dynamic "secret_environment_variables" {
      for_each = each.key == "api" ? [1] : []
      content {
        key        = "API_TOKENS"
        project_id = var.project_id
        secret     = google_secret_manager_secret.api_tokens.secret_id
        version    = "latest"
      }
    }

    dynamic "secret_environment_variables" {
      for_each = contains(local.webhook_signers, each.key) ? [1] : []
      content {
        key        = "WEBHOOK_SIGNING_SECRET"
        project_id = var.project_id
        secret     = google_secret_manager_secret.webhook_signing.secret_id
        version    = "latest"
      }
    }

    dynamic "secret_volumes" {
      for_each = contains(local.kubeconfig_readers, each.key) ? [1] : []
      content {
        mount_path = local.kubeconfig_mount
        project_id = var.project_id
        secret     = google_secret_manager_secret.kubeconfig[0].secret_id
        versions {
          version = "latest"
          path    = "kubeconfig"
        }
      }
    }
  }

  lifecycle {
    # Code is deployed by cloudbuild.yaml (`gcloud functions deploy`), which also labels the function.
    ignore_changes = [build_config[0].source, labels]
  }

  depends_on = [
    google_project_iam_member.fn_build,
    google_project_iam_member.fn_build_sources,
    google_project_iam_member.firestore_user,
    google_secret_manager_secret_iam_member.api_tokens,
    google_secret_manager_secret_iam_member.kubeconfig,
    google_secret_manager_secret_iam_member.webhook_signing,
  ]
}

# The api is not public: only the studio's service account may invoke it.
resource "google_cloud_run_v2_service_iam_member" "studio_invoker" {
  count = var.deploy_functions ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["api"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${var.studio_service_account}"
}

resource "google_cloud_run_v2_service_iam_member" "push_invoker" {
  for_each = var.deploy_functions ? toset(values(local.push_consumers)) : toset([])

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn[each.value].name
  role     = "roles/run.invoker"
  member   = google_service_account.push.member
}

resource "google_cloud_run_v2_service_iam_member" "scheduler_invoker" {
  count = var.deploy_functions ? 1 : 0

  project  = var.project_id
  location = var.region
  name     = google_cloudfunctions2_function.fn["reconcile"].name
  role     = "roles/run.invoker"
  member   = google_service_account.scheduler.member
}

resource "google_cloud_scheduler_job" "reconcile" {
  count = var.deploy_functions ? 1 : 0

  project          = var.project_id
  region           = var.region
  name             = "training-reconcile"
  description      = "Polls the backends for every non-terminal job and fixes drift."
  schedule         = var.reconcile_schedule
  time_zone        = "Etc/UTC"
  attempt_deadline = "${local.functions.reconcile.timeout}s"

  retry_config {
    retry_count          = 1
    min_backoff_duration = "30s"
  }

  http_target {
    http_method = "POST"
    uri         = google_cloudfunctions2_function.fn["reconcile"].service_config[0].uri
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode("{}")

    oidc_token {
      service_account_email = google_service_account.scheduler.email
      audience              = google_cloudfunctions2_function.fn["reconcile"].service_config[0].uri
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.scheduler_invoker]
}
