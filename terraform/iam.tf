# One service account per Cloud Run service and job, one for Cloud Scheduler, and the only
# roles they get. scripts/check_deploy.py compares these grants with the table in
# docs/deploy.md ("Permissions"); add a role there and here together, or not at all.

locals {
  # Service account key => what it may touch.
  #   bucket:    role on the blob bucket (objectViewer: read and sign; objectUser: also write and
  #              delete, without the IAM-policy permissions of objectAdmin), or null.
  #   sign_urls: serviceAccountTokenCreator on itself, for IAM signBlob (V4 signed download URLs).
  #   secrets:   "service" (database URL, authentication material, events' destinations),
  #              "events" (database URL and the events' destinations) or "database" (URL only).
  access = {
    blob          = { bucket = "roles/storage.objectViewer", sign_urls = true, secrets = "service" }
    manifest      = { bucket = "roles/storage.objectUser", sign_urls = true, secrets = "service" }
    upload        = { bucket = "roles/storage.objectUser", sign_urls = false, secrets = "service" }
    api           = { bucket = null, sign_urls = false, secrets = "service" }
    "job-migrate" = { bucket = null, sign_urls = false, secrets = "database" }
    "job-run-all" = { bucket = "roles/storage.objectUser", sign_urls = false, secrets = "events" }
    # deliver-events: the database and the events' destinations only.
    "job-deliver" = { bucket = null, sign_urls = false, secrets = "events" }
  }

  secrets_of = {
    service  = local.secret_keys
    events   = setintersection(local.secret_keys, setunion(["database-url"], local.event_secret_keys))
    database = toset(["database-url"])
  }

  # (account, secret) pairs with read access.
  secret_access = merge([
    for account, a in local.access : {
      for key in local.secrets_of[a.secrets] :
      "${account}/${key}" => { account = account, secret = key }
    }
  ]...)
}

resource "google_service_account" "runtime" {
  for_each = local.access

  account_id   = "${var.name}-${each.key}"
  display_name = "Registry ${each.key}"
  description  = "Runs the registry's ${each.key} (Cloud Run); roles in terraform/iam.tf."

  depends_on = [google_project_service.api]
}

resource "google_service_account" "scheduler" {
  account_id   = "${var.name}-scheduler"
  display_name = "Registry scheduler"
  description  = "Cloud Scheduler runs the registry's jobs as this account (run.invoker on those jobs only)."

  depends_on = [google_project_service.api]
}

resource "google_storage_bucket_iam_member" "bucket" {
  for_each = { for account, a in local.access : account => a.bucket if a.bucket != null }

  bucket = google_storage_bucket.blobs.name
  role   = each.value
  member = "serviceAccount:${google_service_account.runtime[each.key].email}"
}

resource "google_service_account_iam_member" "sign_urls" {
  for_each = { for account, a in local.access : account => a if a.sign_urls && var.gcs_redirect_downloads }

  service_account_id = google_service_account.runtime[each.key].name
  role               = "roles/iam.serviceAccountTokenCreator"
  member             = "serviceAccount:${google_service_account.runtime[each.key].email}"
}

# Cloud SQL has no per-instance IAM: the project-level role is limited to the one instance by
# a condition.
resource "google_project_iam_member" "cloudsql_client" {
  for_each = local.cloudsql_connection == null ? {} : local.access

  project = var.project
  role    = "roles/cloudsql.client"
  member  = "serviceAccount:${google_service_account.runtime[each.key].email}"

  condition {
    title      = "${var.name}-instance-only"
    expression = "resource.name == 'projects/${split(":", local.cloudsql_connection)[0]}/instances/${split(":", local.cloudsql_connection)[2]}' && resource.type == 'sqladmin.googleapis.com/Instance'"
  }
}

resource "google_secret_manager_secret_iam_member" "access" {
  for_each = local.secret_access

  secret_id = google_secret_manager_secret.secret[each.value.secret].id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime[each.value.account].email}"
}

resource "google_cloud_run_v2_job_iam_member" "scheduler" {
  for_each = { for job, j in local.jobs : job => j if j.schedule != null }

  name     = google_cloud_run_v2_job.job[each.key].name
  location = var.region
  role     = "roles/run.invoker"
  member   = "serviceAccount:${google_service_account.scheduler.email}"
}
