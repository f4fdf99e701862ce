terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8.0"
    }
    google-beta = {
      source  = "hashicorp/google-beta"
      version = ">= 6.50, < 8.0"
    }
  }

  # Keep the state remote and locked, e.g.:
  # backend "gcs" {
  #   bucket = "ops-terraform-state"
  #   prefix = "gke-iam-remediator"
  # }
}

provider "google" {
  project = var.ops_project_id
  region  = var.region
}

provider "google-beta" {
  project = var.ops_project_id
  region  = var.region
}
