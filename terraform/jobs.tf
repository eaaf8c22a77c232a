# Cloud Run Jobs running the `jobs` binary, and the Cloud Scheduler triggers of the scheduled
# ones. `migrate` has no schedule: the deployment runs it before the services roll to a new
# image (docs/deploy.md, "Upgrading"). `run-all` runs every maintenance job in order
# (index-manifests, blob-gc, upload-cleanup, project-storage), stopping at the first failure:
# garbage collection must not run before the manifests are indexed. `deliver-events` sends the
# events the services could not send right after their commits (retries, dead letters),
# every minute while a destination is configured; it and `run-all` get the events' settings.

locals {
  jobs = {
    migrate = {
      args     = ["migrate"]
      schedule = null
      timeout  = "1800s"
      events   = false
      account  = "job-migrate"
    }
    "run-all" = {
      args     = ["run-all"]
      schedule = var.jobs_schedule
      timeout  = "3600s"
      events   = true
      account  = "job-run-all"
    }
    # Executions may overlap (a slow endpoint): deliverers claim rows with SKIP LOCKED.
    "deliver-events" = {
      args     = ["deliver-events"]
      schedule = local.events_enabled ? var.deliver_events_schedule : null
      timeout  = "600s"
      events   = true
      account  = "job-deliver" # service account ids are at most 30 characters
    }
  }

  # DB_MAX_CONNECTIONS of a job task.
  job_db_pool = 2

  job_env_base = {
    DB_MAX_CONNECTIONS  = tostring(local.job_db_pool)
    GC_GRACE_SECS       = tostring(var.gc_grace_secs)
    UPLOAD_MAX_AGE_SECS = tostring(var.upload_max_age_secs)
    JOB_BATCH_SIZE      = tostring(var.job_batch_size)
  }
  job_env_all = merge(local.common_env, local.job_env_base)
  job_env     = { for k, v in local.job_env_all : k => v if v != null && v != "" }
  # The jobs that send events: also these (the files' paths as the services have them).
  job_events_env = merge(
    { for k, v in local.events_env : k => v if v != null && v != "" },
    { for key, variable in local.event_file_secrets : variable => "/secrets/${key}/${key}" },
  )
}

resource "google_cloud_run_v2_job" "job" {
  for_each = local.jobs

  name                = "${var.name}-${each.key}"
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account       = google_service_account.runtime[each.value.account].email
      timeout               = each.value.timeout
      max_retries           = 1 # every job is idempotent
      execution_environment = "EXECUTION_ENVIRONMENT_GEN2"

      dynamic "volumes" {
        for_each = local.cloudsql_connection == null ? [] : [local.cloudsql_connection]
        content {
          name = "cloudsql"
          cloud_sql_instance {
            instances = [volumes.value]
          }
        }
      }

      dynamic "volumes" {
        for_each = each.value.events ? local.event_file_secrets : {}
        content {
          name = volumes.key
          secret {
            secret = google_secret_manager_secret.secret[volumes.key].secret_id
            items {
              version = google_secret_manager_secret_version.secret[volumes.key].version
              path    = volumes.key
            }
          }
        }
      }

      containers {
        image = var.image_jobs
        args  = each.value.args

        resources {
          limits = {
            cpu    = "1"
            memory = "1Gi"
          }
        }

        dynamic "env" {
          for_each = local.job_env
          content {
            name  = env.key
            value = env.value
          }
        }

        dynamic "env" {
          for_each = each.value.events ? local.job_events_env : {}
          content {
            name  = env.key
            value = env.value
          }
        }

        env {
          name = "DATABASE_URL"
          value_source {
            secret_key_ref {
              secret  = google_secret_manager_secret.secret["database-url"].secret_id
              version = google_secret_manager_secret_version.secret["database-url"].version
            }
          }
        }

        dynamic "env" {
          for_each = each.value.events ? local.event_env_secrets : {}
          content {
            name = env.key
            value_source {
              secret_key_ref {
                secret  = google_secret_manager_secret.secret[env.value].secret_id
                version = google_secret_manager_secret_version.secret[env.value].version
              }
            }
          }
        }

        dynamic "volume_mounts" {
          for_each = local.cloudsql_connection == null ? [] : ["cloudsql"]
          content {
            name       = "cloudsql"
            mount_path = "/cloudsql"
          }
        }

        dynamic "volume_mounts" {
          for_each = each.value.events ? local.event_file_secrets : {}
          content {
            name       = volume_mounts.key
            mount_path = "/secrets/${volume_mounts.key}"
          }
        }
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.access,
    google_project_iam_member.cloudsql_client,
    google_storage_bucket_iam_member.bucket,
  ]
}

resource "google_cloud_scheduler_job" "job" {
  for_each = { for job, j in local.jobs : job => j if j.schedule != null }

  name             = "${var.name}-${each.key}"
  region           = var.region
  description      = "Runs the Cloud Run job ${google_cloud_run_v2_job.job[each.key].name} (jobs ${join(" ", each.value.args)})."
  schedule         = each.value.schedule
  time_zone        = var.jobs_time_zone
  attempt_deadline = "60s" # the Run Admin API answers once the execution has started

  retry_config {
    retry_count = 1
  }

  http_target {
    http_method = "POST"
    uri         = "https://run.googleapis.com/v2/projects/${var.project}/locations/${var.region}/jobs/${google_cloud_run_v2_job.job[each.key].name}:run"

    oauth_token {
      service_account_email = google_service_account.scheduler.email
      scope                 = "https://www.googleapis.com/auth/cloud-platform"
    }
  }

  depends_on = [google_cloud_run_v2_job_iam_member.scheduler]
}
