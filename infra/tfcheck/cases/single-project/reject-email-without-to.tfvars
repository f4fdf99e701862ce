# expect-error: email needs at least one address in `to`
project_id = "acme-gke-prod"
region     = "europe-west1"
image      = "europe-west1-docker.pkg.dev/acme-gke-prod/remediator/gke-iam-remediator@sha256:3333333333333333333333333333333333333333333333333333333333333333"
email = {
  host = "smtp.example.com"
  from = "remediator@example.com"
  to   = []
}
