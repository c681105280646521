output "function_urls" {
  description = "HTTPS URL of each function (api is the one the studio calls, with an ID token for studio_service_account)."
  value       = { for k, f in google_cloudfunctions2_function.fn : k => f.service_config[0].uri }
}

output "api_url" {
  description = "Base URL of the api (GET /health, POST /train, ...). Empty until deploy_functions = true."
  value       = try(google_cloudfunctions2_function.fn["api"].service_config[0].uri, "")
}

output "topics" {
  description = "Pub/Sub topic names by role (TOPIC_* settings)."
  value       = { for k, t in google_pubsub_topic.topics : k => t.name }
}

output "dead_letter_topics" {
  description = "Dead-letter topic of each consumed topic; each has a pull subscription of the same name."
  value       = { for k, t in google_pubsub_topic.dead_letter : local.topics[k] => t.name }
}

output "trainer_image" {
  description = "Trainer image URI that K8S_TRAINING_IMAGE and VERTEX_IMAGE_URI point at (pushed by cloudbuild.yaml)."
  value       = local.trainer_image
}

output "image_repository" {
  description = "Artifact Registry Docker repository prefix (<region>-docker.pkg.dev/<project>/<repository>)."
  value       = local.image_repo
}

output "data_bucket" {
  description = "GCS bucket for datasets and trained models."
  value       = google_storage_bucket.data.name
}

output "secrets" {
  description = "Secret Manager secret ids to add versions to (HF token, api bearer tokens, launcher kubeconfig)."
  value = {
    hf_token   = google_secret_manager_secret.hf_token.secret_id
    api_tokens = google_secret_manager_secret.api_tokens.secret_id
    kubeconfig = try(google_secret_manager_secret.kubeconfig[0].secret_id, "")
  }
}

output "service_accounts" {
  description = "Service account emails: one per function, plus trainer (Vertex jobs), watcher (non-GKE clusters), push, scheduler, fn_build and ci (cloudbuild.yaml)."
  value = merge(
    { for k, sa in google_service_account.fn : k => sa.email },
    {
      trainer   = google_service_account.trainer.email
      watcher   = google_service_account.watcher.email
      push      = google_service_account.push.email
      scheduler = google_service_account.scheduler.email
      fn_build  = google_service_account.fn_build.email
      ci        = google_service_account.ci.email
    },
  )
}

output "firestore_database" {
  description = "Firestore database id (FIRESTORE_DATABASE)."
  value       = google_firestore_database.main.name
}
