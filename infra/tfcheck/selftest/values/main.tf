# Deliberate value mistakes: a value outside the provider's documented enum, and a value of the wrong
# type (run.sh expects every `expect-error` line below in the output).
# expect-error: ingress must be one of ['INGRESS_TRAFFIC_ALL', 'INGRESS_TRAFFIC_INTERNAL_ONLY', 'INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER'], got 'INTERNAL_ONLY'
# expect-error: a number is required

terraform {
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50, < 8.0"
    }
  }
}

resource "google_cloud_run_v2_service" "bad_ingress" {
  name     = "svc"
  location = "europe-west1"
  ingress  = "INTERNAL_ONLY"

  template {
    containers {
      image = "europe-west1-docker.pkg.dev/p/r/i:1"
    }
  }
}

resource "google_cloud_run_v2_service" "bad_type" {
  name     = "svc2"
  location = "europe-west1"

  template {
    scaling {
      max_instance_count = "lots"
    }
    containers {
      image = "europe-west1-docker.pkg.dev/p/r/i:1"
    }
  }
}
