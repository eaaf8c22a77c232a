# The four Cloud Run services. Each serves HTTP/1.1 and h2c on $PORT; the port is named h2c so
# that Cloud Run speaks HTTP/2 to the container end to end, which lifts the 32 MiB limit on
# HTTP/1 request bodies (layer uploads). Reachable only through the load balancer (ingress);
# the registry authenticates its clients itself (AUTH_MODE), so Cloud Run's IAM invoker check
# is off: the load balancer forwards no Google identity.

locals {
  service_images = {
    blob     = var.image_blob
    manifest = var.image_manifest
    upload   = var.image_upload
    api      = var.image_api
  }

  # Variables every service and job gets (README, "Configuration").
  common_env = {
    DATA_DIR             = "/tmp/registry" # SQLite is not used; the directory is created at start-up
    STORAGE_BACKEND      = "gcs"
    BUCKET_NAME          = google_storage_bucket.blobs.name
    GCS_PREFIX           = var.gcs_prefix
    DB_MIN_CONNECTIONS   = "0"
    LOG_LEVEL            = var.log_level
    LOG_FORMAT           = "json"
    GOOGLE_CLOUD_PROJECT = var.project
  }

  # Events' settings, for the services and the jobs that send events (the secrets among them
  # come from secrets.tf); the NATS ones only with NATS (set without NATS_URL, they stop the
  # start).
  events_env = {
    NATS_SUBJECT_PREFIX   = local.nats ? var.nats_subject_prefix : null
    NATS_JETSTREAM        = local.nats ? var.nats_jetstream : null
    NATS_USER             = local.nats ? var.nats_user : null
    EVENTS_MAX_ATTEMPTS   = tostring(var.events_max_attempts)
    EVENTS_RETENTION_SECS = tostring(var.events_retention_secs)
    EVENTS_PULLS          = tostring(var.events_pulls)
  }

  # The services' own variables; null values are left out.
  service_env_base = {
    HOST                     = "0.0.0.0"
    DB_MIGRATE_ON_START      = "false" # the migrate job does it, before a new revision starts
    GCS_REDIRECT_DOWNLOADS   = tostring(var.gcs_redirect_downloads)
    GCS_SIGNED_URL_TTL_SECS  = tostring(var.gcs_signed_url_ttl_secs)
    AUTH_MODE                = var.auth_mode
    ALLOW_ANONYMOUS_REMOTE   = var.auth_mode == "none" ? "true" : null
    AUTH_CACHE_TTL_SECS      = var.auth_mode == "none" ? null : tostring(var.auth_cache_ttl_secs)
    TOKEN_REALM              = local.token ? coalesce(var.token_realm, "https://${var.domain}/auth/token") : null
    TOKEN_SERVICE            = local.token ? var.domain : null
    TOKEN_ISSUER             = local.token ? var.domain : null
    TOKEN_TTL_SECS           = local.token ? tostring(var.token_ttl_secs) : null
    JWT_ISSUER               = local.token ? var.jwt_issuer : null
    DELEGATED_PERMISSION_URL = var.auth_mode == "delegated" ? var.delegated_permission_url : null
    DELEGATED_TIMEOUT_SECS   = var.auth_mode == "delegated" ? tostring(var.delegated_timeout_secs) : null
    API_CORS_ORIGINS         = join(",", var.api_cors_origins)
  }
  service_env_all = merge(
    local.common_env,
    local.events_env,
    local.service_env_base,
    { for key, variable in local.file_secrets : variable => "/secrets/${key}/${key}" },
  )
  service_env = { for k, v in local.service_env_all : k => v if v != null && v != "" }

  # PostgreSQL connections the services and jobs may open at most.
  db_connections = sum([for s in var.services : s.max_instances * s.db_pool]) + 2 * local.job_db_pool
}

resource "google_cloud_run_v2_service" "service" {
  for_each = var.services

  name                 = "${var.name}-${each.key}"
  location             = var.region
  ingress              = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  invoker_iam_disabled = true
  deletion_protection  = var.deletion_protection

  template {
    service_account                  = google_service_account.runtime[each.key].email
    max_instance_request_concurrency = each.value.concurrency
    timeout                          = "${each.value.timeout_secs}s"
    execution_environment            = "EXECUTION_ENVIRONMENT_GEN2"

    scaling {
      min_instance_count = each.value.min_instances
      max_instance_count = each.value.max_instances
    }

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
      for_each = local.file_secrets
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
      name  = each.key
      image = local.service_images[each.key]

      ports {
        name           = "h2c"
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = each.value.cpu
          memory = each.value.memory
        }
        # The api service finishes deleteRepository after answering (the delete is detached
        # from the request), which needs CPU once the response is sent: CPU always allocated
        # there. It still scales to zero when idle. The others only work inside requests.
        cpu_idle          = each.key != "api"
        startup_cpu_boost = true
      }

      dynamic "env" {
        for_each = local.service_env
        content {
          name  = env.key
          value = env.value
        }
      }

      env {
        name  = "DB_MAX_CONNECTIONS"
        value = tostring(each.value.db_pool)
      }

      dynamic "env" {
        for_each = local.env_secrets
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
        for_each = local.file_secrets
        content {
          name       = volume_mounts.key
          mount_path = "/secrets/${volume_mounts.key}"
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.auth_mode != "none" || var.allow_anonymous
      error_message = "auth_mode = none lets anyone on the internet push and delete: set allow_anonymous = true if that is really meant."
    }
    precondition {
      condition     = var.auth_mode != "basic" || (nonsensitive(var.htpasswd != null) && var.auth_rules != null)
      error_message = "auth_mode = basic needs htpasswd and auth_rules."
    }
    precondition {
      condition     = !local.token || var.auth_rules != null || var.token_realm != null
      error_message = "auth_mode = token needs auth_rules (the registry issues tokens) or token_realm (an external token service)."
    }
    precondition {
      condition     = !local.token || var.auth_rules == null || nonsensitive(var.htpasswd != null)
      error_message = "auth_mode = token with auth_rules issues tokens to the users of htpasswd: set htpasswd."
    }
    precondition {
      condition     = var.auth_mode != "delegated" || var.delegated_permission_url != null
      error_message = "auth_mode = delegated needs delegated_permission_url."
    }
    precondition {
      condition     = local.db_connections < var.db_max_connections
      error_message = "The services may open more PostgreSQL connections (sum of max_instances x db_pool, plus jobs) than db_max_connections allows."
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.access,
    google_project_iam_member.cloudsql_client,
    google_storage_bucket_iam_member.bucket,
  ]
}
