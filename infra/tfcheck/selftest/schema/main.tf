# Deliberate mistakes that `terraform validate` must report against the extracted schema: proof that
# tfcheck can fail (run.sh expects every `expect-error` line below in the output).
# expect-error: An argument named "nmae" is not expected here.
# expect-error: Insufficient template blocks
# expect-error: does not support resource type "google_project_service_identity"
# expect-error: The argument "account_id" is required
# expect-error: no argument, nested block, or exported attribute named "mail"

terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8.0"
    }
  }
}

# A misspelt argument.
resource "google_pubsub_topic" "misspelt" {
  nmae = "events"
}

# A required block left out.
resource "google_cloud_run_v2_service" "no_template" {
  name     = "svc"
  location = "europe-west1"
}

# A google-beta-only type used without provider = google-beta.
resource "google_project_service_identity" "beta_only" {
  service = "cloudasset.googleapis.com"
}

# A required argument left out.
resource "google_service_account" "no_id" {
  display_name = "no account id"
}

# An attribute that does not exist.
resource "google_service_account" "ok" {
  account_id = "abcdef"
}

output "mail" {
  value = google_service_account.ok.mail
}
