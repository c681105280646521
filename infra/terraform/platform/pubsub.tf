# Topics, dead-letter topics and the push subscriptions that deliver to the functions.
#
# Why push subscriptions of our own and not Eventarc triggers: the subscription an Eventarc trigger
# creates is managed by Google and cannot carry our dead-letter policy or retry backoff. The consuming
# functions are therefore deployed HTTP-triggered, ingress internal-only, and invoked by these push
# subscriptions with an OIDC token of the `training-push` service account; the staged main.py registers
# them as CloudEvent functions, and functions-framework converts the push envelope into a CloudEvent.
# The push URL carries /projects/P/topics/T so the event's `source` names the topic.
#
# Which subscriptions exist and their settings (ordering, ack deadlines, retry, dead-lettering) come from
# pubsub_subscriptions.json, which `make run-emulators` (functions/local_stack.py) reads too.

locals {
  pubsub = jsondecode(file("${path.module}/pubsub_subscriptions.json"))
  # topic key -> its push subscription (the consuming function is a key of local.functions)
  push_subscriptions = local.pubsub.push
  push_consumers     = { for key, sub in local.pubsub.push : key => sub.function }
  dead_letter_suffix = local.pubsub.dead_letter.topic_suffix
}

resource "google_pubsub_topic" "topics" {
  for_each = local.topics

  project                    = var.project_id
  name                       = each.value
  labels                     = var.labels
  message_retention_duration = local.pubsub.message_retention_duration

  depends_on = [google_project_service.apis]
}

resource "google_pubsub_topic" "dead_letter" {
  for_each = toset(local.dead_lettered)

  project                    = var.project_id
  name                       = "${local.topics[each.value]}${local.dead_letter_suffix}"
  labels                     = var.labels
  message_retention_duration = local.pubsub.message_retention_duration

  depends_on = [google_project_service.apis]
}

# Pull subscriptions keep dead-lettered messages (7 days) for inspection and replay; a topic with no
# subscription drops what it receives.
resource "google_pubsub_subscription" "dead_letter" {
  for_each = toset(local.dead_lettered)

  project                    = var.project_id
  name                       = "${local.topics[each.value]}${local.dead_letter_suffix}"
  topic                      = google_pubsub_topic.dead_letter[each.value].id
  labels                     = var.labels
  ack_deadline_seconds       = local.pubsub.dead_letter.ack_deadline_seconds
  message_retention_duration = local.pubsub.message_retention_duration
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

# Rejected batch submissions are for the studio to read (pull).
moved {
  from = google_pubsub_subscription.submissions_rejected
  to   = google_pubsub_subscription.submissions_rejected["train_submissions_rejected"]
}

resource "google_pubsub_subscription" "submissions_rejected" {
  for_each = local.pubsub.pull

  project                    = var.project_id
  name                       = "${local.topics[each.key]}${each.value.name_suffix}"
  topic                      = google_pubsub_topic.topics[each.key].id
  labels                     = var.labels
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = local.pubsub.message_retention_duration

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_subscription" "push" {
  for_each = var.deploy_functions ? local.push_subscriptions : {}

  project = var.project_id
  name    = "${local.topics[each.key]}-${replace(each.value.function, "_", "-")}"
  topic   = google_pubsub_topic.topics[each.key].id
  labels  = var.labels

  # The function must answer within the ack deadline (checked against its timeout below).
  ack_deadline_seconds       = each.value.ack_deadline_seconds
  message_retention_duration = local.pubsub.message_retention_duration
  # Only training-events is ordered: events of one job carry its id as ordering key. The others are
  # not, as nothing there needs it (and the Pub/Sub emulator stops pushing an ordered subscription
  # once it dead-letters a message).
  enable_message_ordering = each.value.enable_message_ordering

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri}/projects/${var.project_id}/topics/${local.topics[each.key]}"

    oidc_token {
      service_account_email = google_service_account.push.email
      audience              = google_cloudfunctions2_function.fn[each.value.function].service_config[0].uri
    }
  }

  retry_policy {
    minimum_backoff = coalesce(var.pubsub_minimum_backoff, local.pubsub.retry_policy.minimum_backoff)
    maximum_backoff = coalesce(var.pubsub_maximum_backoff, local.pubsub.retry_policy.maximum_backoff)
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter[each.key].id
    max_delivery_attempts = coalesce(var.pubsub_max_delivery_attempts, local.pubsub.max_delivery_attempts)
  }

  lifecycle {
    precondition {
      condition     = local.functions[each.value.function].timeout <= each.value.ack_deadline_seconds
      error_message = "The ack deadline of a push subscription (pubsub_subscriptions.json) must be at least its function's timeout (functions.tf)."
    }
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
