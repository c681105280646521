# Topics, dead-letter topics and the push subscriptions that deliver to the functions.
#
# Why push subscriptions of our own and not Eventarc triggers: the subscription an Eventarc trigger
# creates is managed by Google and cannot carry our dead-letter policy or retry backoff. The consuming
# functions are therefore deployed HTTP-triggered, ingress internal-only, and invoked by these push
# subscriptions with an OIDC token of the `training-push` service account; the staged main.py registers
# them as CloudEvent functions, and functions-framework converts the push envelope into a CloudEvent.
# The push URL carries /projects/P/topics/T so the event's `source` names the topic.

resource "google_pubsub_topic" "topics" {
  for_each = local.topics

  project                    = var.project_id
  name                       = each.value
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = toset(local.dead_lettered)

  project                    = var.project_id
  name                       = "${local.topics[each.value]}-dead-letter"
  labels                     = var.labels
  message_retention_duration = "604800s"

  depends_on = [google_project_service.apis]
}

# Pull subscriptions keep dead-lettered messages (7 days) for inspection and replay; a topic with no
# subscription drops what it receives.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = toset(local.dead_lettered)

  project                    = var.project_id
  name                       = "${local.topics[each.value]}-dead-letter"
  topic                      = google_pubsub_topic.dead_letter[each.value].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# Rejected batch submissions are for the studio to read (pull).
resource "google_pubsub_subscription" "submissions_rejected" {
  project                    = var.project_id
  name                       = "train-submissions-rejected-studio"
  topic                      = google_pubsub_topic.topics["train_submissions_rejected"].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"

  expiration_policy {
    ttl = ""
  }
}

locals {
  # topic key -> consuming function key (functions.tf)
  push_consumers = {
    train_requests    = "launcher"
    training_events   = "status_sync"
    train_submissions = "submit"
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = var.deploy_functions ? local.push_consumers : {}

  project = var.project_id
  name    = "${local.topics[each.key]}-${replace(each.value, "_", "-")}"
  topic   = google_pubsub_topic.topics[each.key].id
  labels  = var.labels

  # The function must answer within the ack deadline; it equals the function timeout.
  ack_deadline_seconds       = local.functions[each.value].timeout
  message_retention_duration = "604800s"
  # Events of one job carry its id as ordering key (when the publisher sets one); ordering is
  # harmless otherwise and status_sync compare-and-sets anyway.
  enable_message_ordering = each.key == "training_events"

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.fn[each.value].service_config[0].uri}/projects/${var.project_id}/topics/${local.topics[each.key]}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.fn[each.value].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = var.pubsub_minimum_backoff
    maximum_backoff = var.pubsub_maximum_backoff
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = var.pubsub_max_delivery_attempts
  }

  expiration_policy {
    ttl = ""
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letter_publisher,
    google_cloud_run_v2_service_iam_member.push_invoker,
  ]
}

# Dead-lettering: the Pub/Sub service agent publishes to the dead-letter topic and acks the original.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  for_each = toset(local.dead_lettered)

  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[each.value].name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "dead_letter_subscriber" {
  for_each = google_pubsub_subscription.push

  project      = var.project_id
  subscription = each.value.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# Vertex AI CustomJob logs (resource ml_job) flow into training-events, where status_sync lifts state
# changes, log lines and PROGRESS lines out of them; the same path as the cluster watcher's events.
resource "google_logging_project_sink" "vertex_jobs" {
  project                = var.project_id
  name                   = "training-vertex-ml-job-logs"
  destination            = "pubsub.googleapis.com/${google_pubsub_topic.topics["training_events"].id}"
  filter                 = "resource.type=\"ml_job\""
  unique_writer_identity = true
  description            = "Vertex AI CustomJob logs to the training-events topic (status_sync)."
}

resource "google_pubsub_topic_iam_member" "sink_publisher" {
  project = var.project_id
  topic   = google_pubsub_topic.topics["training_events"].name
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.vertex_jobs.writer_identity
}
