# Topics: events (audit-log sink, asset feed and sweep requests in), notifications (Notification v1 out),
# dead letters (events that failed max_delivery_attempts times). One push subscription delivers events to
# the service with an OIDC token; a pull subscription keeps dead letters for inspection and replay.

resource "google_pubsub_topic" "events" {
  project      = var.project_id
  name         = "${var.name}-events"
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "notifications" {
  project      = var.project_id
  name         = "${var.name}-notifications"
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.this]
}

resource "google_pubsub_topic" "dead_letters" {
  project      = var.project_id
  name         = "${var.name}-dead-letters"
  labels       = local.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.this]
}

resource "google_pubsub_subscription" "push" {
  project = var.project_id
  name    = "${var.name}-push"
  topic   = google_pubsub_topic.events.id
  labels  = local.labels

  # For push, the ack deadline is also the request timeout (the service may hold a request for the
  # grace delay and per-project coalescing).
  ack_deadline_seconds       = var.ack_deadline_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.this.uri}/pubsub/push"

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = local.push_audience
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = "" # never expires
  }

  lifecycle {
    precondition {
      condition     = var.ack_deadline_seconds >= var.grace_seconds + 30
      error_message = "ack_deadline_seconds must be at least grace_seconds + 30: the service waits for the grace delay inside the push request."
    }
    precondition {
      condition     = tonumber(trimsuffix(var.retry_minimum_backoff, "s")) <= tonumber(trimsuffix(var.retry_maximum_backoff, "s"))
      error_message = "retry_minimum_backoff (${var.retry_minimum_backoff}) must not exceed retry_maximum_backoff (${var.retry_maximum_backoff})."
    }
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letters_pubsub_agent,
    google_service_account_iam_member.invoker_token_creator,
  ]
}

resource "google_pubsub_subscription" "dead_letters" {
  project = var.project_id
  name    = "${var.name}-dead-letters"
  topic   = google_pubsub_topic.dead_letters.id
  labels  = local.labels

  ack_deadline_seconds       = 60
  message_retention_duration = var.dead_letter_retention
  retain_acked_messages      = false

  expiration_policy {
    ttl = "" # never expires: dead letters must be kept
  }
}

# The Pub/Sub service agent forwards undeliverable messages: it publishes to the dead-letter topic and
# acknowledges on the source subscription.
resource "google_pubsub_topic_iam_member" "dead_letters_pubsub_agent" {
  project = var.project_id
  topic   = google_pubsub_topic.dead_letters.name
  role    = "roles/pubsub.publisher"
  member  = local.pubsub_agent
}

resource "google_pubsub_subscription_iam_member" "push_pubsub_agent" {
  project      = var.project_id
  subscription = google_pubsub_subscription.push.name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The runtime account publishes notifications, and nothing else on Pub/Sub.
resource "google_pubsub_topic_iam_member" "notifications_runtime" {
  project = var.project_id
  topic   = google_pubsub_topic.notifications.name
  role    = "roles/pubsub.publisher"
  member  = local.runtime_member
}

# Fan-out: notifications are pushed back to the service's /pubsub/notify, which delivers them to Slack,
# email and webhooks per the policy's routes (only when a notifications section is configured).
resource "google_pubsub_subscription" "notify_push" {
  count = var.notifications == null ? 0 : 1

  project = var.project_id
  name    = "${var.name}-notify-push"
  topic   = google_pubsub_topic.notifications.id
  labels  = local.labels

  ack_deadline_seconds       = var.notify_ack_deadline_seconds
  message_retention_duration = "604800s"

  push_config {
    push_endpoint = "${google_cloud_run_v2_service.this.uri}/pubsub/notify"

    oidc_token {
      service_account_email = google_service_account.invoker.email
      audience              = local.push_audience
    }
  }

  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letters.id
    max_delivery_attempts = var.max_delivery_attempts
  }

  retry_policy {
    minimum_backoff = var.retry_minimum_backoff
    maximum_backoff = var.retry_maximum_backoff
  }

  expiration_policy {
    ttl = "" # never expires
  }

  depends_on = [
    google_pubsub_topic_iam_member.dead_letters_pubsub_agent,
    google_service_account_iam_member.invoker_token_creator,
  ]
}

resource "google_pubsub_subscription_iam_member" "notify_push_pubsub_agent" {
  count = var.notifications == null ? 0 : 1

  project      = var.project_id
  subscription = google_pubsub_subscription.notify_push[0].name
  role         = "roles/pubsub.subscriber"
  member       = local.pubsub_agent
}

# The Pub/Sub service agent mints the push requests' OIDC tokens for the push account. Projects that
# enabled Pub/Sub before 8 April 2021 need this grant explicitly (newer ones have it through the agent's
# role); it is harmless where it is redundant. Push subscriptions wait for it.
resource "google_service_account_iam_member" "invoker_token_creator" {
  service_account_id = google_service_account.invoker.name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = local.pubsub_agent
}
