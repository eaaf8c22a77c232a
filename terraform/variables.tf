# Everything an operator chooses. docs/deploy.md explains each group; terraform.tfvars.example
# shows a complete set.

# --- Project and naming -------------------------------------------------------------------

variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run services and jobs, Cloud SQL, Cloud Scheduler and (by default) the bucket."
  type        = string
  default     = "europe-west1"
}

variable "name" {
  description = "Prefix of every resource name (service accounts are limited to 30 characters, so keep it short)."
  type        = string
  default     = "registry"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,14}$", var.name))
    error_message = "name: 2 to 15 characters, lower-case letters, digits and dashes, starting with a letter."
  }
}

variable "domain" {
  description = "Host name clients use (e.g. registry.example.com). Its A and AAAA records must point at the load balancer's addresses (output lb_ipv4, lb_ipv6) for the managed certificate to be issued."
  type        = string
}

variable "deletion_protection" {
  description = "Protect the Cloud Run services, jobs and the Cloud SQL instance from `terraform destroy`."
  type        = bool
  default     = true
}

# --- Images (pushed by cloudbuild.yaml, given by digest) ----------------------------------

variable "image_blob" {
  description = "Image of the blob service, e.g. europe-west1-docker.pkg.dev/PROJECT/registry/blob@sha256:..."
  type        = string
}

variable "image_manifest" {
  description = "Image of the manifest service (the URL map's default service)."
  type        = string
}

variable "image_upload" {
  description = "Image of the upload service."
  type        = string
}

variable "image_api" {
  description = "Image of the api service (management API)."
  type        = string
}

variable "image_jobs" {
  description = "Image of the jobs binary (migrate, run-all)."
  type        = string
}

# --- Authentication -------------------------------------------------------------------------

variable "auth_mode" {
  description = "AUTH_MODE of every service: basic, token or delegated. `none` serves anonymous clients on the internet and needs allow_anonymous = true."
  type        = string
  default     = "token"

  validation {
    condition     = contains(["none", "basic", "token", "delegated"], var.auth_mode)
    error_message = "auth_mode: none, basic, token or delegated."
  }
}

variable "allow_anonymous" {
  description = "With auth_mode = none: really let anyone on the internet push and delete (sets ALLOW_ANONYMOUS_REMOTE=true)."
  type        = bool
  default     = false
}

variable "htpasswd" {
  description = "Contents of the htpasswd file (bcrypt entries, `htpasswd -nB user`): basic, and token when the registry issues tokens. Stored in Secret Manager, mounted as HTPASSWD_FILE."
  type        = string
  default     = null
  sensitive   = true
}

variable "auth_rules" {
  description = "Contents of the access-rules JSON file (AUTH_RULES_FILE): basic, and token to enable the registry's own token endpoint."
  type        = string
  default     = null
}

variable "jwt_secret" {
  description = "JWT_SECRET (HS256, at least 32 bytes) for mode token. Null: Terraform generates one (kept in Secret Manager and in the state)."
  type        = string
  default     = null
  sensitive   = true
}

variable "internal_secret" {
  description = "INTERNAL_SECRET (at least 16 bytes): serves the jobs as POST /internal/<job> on the api service, for schedulers that call URLs (the Deploys.app registry's). Null: not served; the jobs run as Cloud Run Jobs either way."
  type        = string
  default     = null
  sensitive   = true
  validation {
    condition     = var.internal_secret == null || try(length(var.internal_secret) >= 16, false)
    error_message = "internal_secret: at least 16 bytes."
  }
}

variable "token_signing_key" {
  description = "PEM private key (RSA, or EC in PKCS#8) that signs issued tokens instead of JWT_SECRET (TOKEN_SIGNING_KEY_FILE)."
  type        = string
  default     = null
  sensitive   = true
}

variable "jwt_public_keys" {
  description = "PEM public keys or a JWKS document verifying tokens issued elsewhere (JWT_PUBLIC_KEYS_FILE)."
  type        = string
  default     = null
}

variable "jwt_issuer" {
  description = "JWT_ISSUER: the `iss` tokens issued elsewhere must carry. Null: not checked."
  type        = string
  default     = null
}

variable "token_realm" {
  description = "TOKEN_REALM. Null: https://<domain>/auth/token, the registry's own token endpoint."
  type        = string
  default     = null
}

variable "token_ttl_secs" {
  description = "TOKEN_TTL_SECS: lifetime of issued tokens."
  type        = number
  default     = 300
}

variable "auth_cache_ttl_secs" {
  description = "AUTH_CACHE_TTL_SECS: how long a checked password or a permission service's answer is remembered per instance."
  type        = number
  default     = 30
}

variable "delegated_permission_url" {
  description = "DELEGATED_PERMISSION_URL: the permission service of mode delegated."
  type        = string
  default     = null
}

variable "delegated_timeout_secs" {
  description = "DELEGATED_TIMEOUT_SECS."
  type        = number
  default     = 5
}

# --- Database -------------------------------------------------------------------------------

variable "database_url" {
  description = "An existing PostgreSQL database (postgres://...). Null: Terraform creates a Cloud SQL instance, database and user."
  type        = string
  default     = null
  sensitive   = true
}

variable "existing_cloudsql_instance" {
  description = "With database_url: the connection name (PROJECT:REGION:INSTANCE) of its Cloud SQL instance, mounted at /cloudsql so that the URL may use ?host=/cloudsql/<connection name>. Null: no socket."
  type        = string
  default     = null
}

variable "db_version" {
  description = "Cloud SQL database version."
  type        = string
  default     = "POSTGRES_16"
}

variable "db_tier" {
  description = "Cloud SQL machine tier."
  type        = string
  default     = "db-custom-1-3840"
}

variable "db_availability_type" {
  description = "ZONAL, or REGIONAL for a standby in another zone."
  type        = string
  default     = "ZONAL"
}

variable "db_max_connections" {
  description = "PostgreSQL max_connections. Must exceed the sum over services of max_instances x db_pool, plus the jobs (checked at plan)."
  type        = number
  default     = 200
}

# --- Services -------------------------------------------------------------------------------

variable "services" {
  description = "Scaling and size of each Cloud Run service. db_pool is DB_MAX_CONNECTIONS per instance."
  type = map(object({
    min_instances = number
    max_instances = number
    concurrency   = number
    cpu           = string
    memory        = string
    timeout_secs  = number
    db_pool       = number
  }))
  default = {
    blob     = { min_instances = 0, max_instances = 10, concurrency = 200, cpu = "1", memory = "512Mi", timeout_secs = 300, db_pool = 4 }
    manifest = { min_instances = 0, max_instances = 10, concurrency = 100, cpu = "1", memory = "512Mi", timeout_secs = 3600, db_pool = 4 }
    upload   = { min_instances = 0, max_instances = 10, concurrency = 50, cpu = "1", memory = "512Mi", timeout_secs = 3600, db_pool = 4 }
    api      = { min_instances = 0, max_instances = 3, concurrency = 100, cpu = "1", memory = "256Mi", timeout_secs = 60, db_pool = 2 }
  }

  validation {
    condition     = toset(keys(var.services)) == toset(["blob", "manifest", "upload", "api"])
    error_message = "services: exactly blob, manifest, upload and api."
  }
}

variable "api_cors_origins" {
  description = "API_CORS_ORIGINS: origins of dashboards whose browsers may call the management API (scheme://host[:port], no path, no *). Empty: none."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for o in var.api_cors_origins : can(regex("^https?://[^/*]+$", o))])
    error_message = "api_cors_origins: each entry is scheme://host[:port], without path or wildcard."
  }
}

variable "log_level" {
  description = "LOG_LEVEL of services and jobs."
  type        = string
  default     = "info"
}

# --- Storage --------------------------------------------------------------------------------

variable "bucket_location" {
  description = "Location of the blob bucket. Null: the region."
  type        = string
  default     = null
}

variable "gcs_prefix" {
  description = "GCS_PREFIX: prefix of every object name (e.g. registry/), empty for none."
  type        = string
  default     = ""
}

variable "gcs_redirect_downloads" {
  description = "GCS_REDIRECT_DOWNLOADS: answer blob GETs with a 307 to a signed URL (true) or stream them through Cloud Run."
  type        = bool
  default     = true
}

variable "gcs_signed_url_ttl_secs" {
  description = "GCS_SIGNED_URL_TTL_SECS."
  type        = number
  default     = 300
}

variable "upload_parts_max_age_days" {
  description = "The bucket deletes objects under uploads/ older than this, a backstop behind the upload-cleanup job. Longer than any upload may take."
  type        = number
  default     = 7
}

variable "bucket_soft_delete_days" {
  description = "Days deleted objects stay recoverable (0, or 7 to 90): a safety net behind garbage collection."
  type        = number
  default     = 7
}

# --- Jobs -----------------------------------------------------------------------------------

variable "jobs_schedule" {
  description = "Cron schedule (Cloud Scheduler syntax) of `jobs run-all`."
  type        = string
  default     = "17 * * * *"
}

variable "jobs_time_zone" {
  description = "Time zone of jobs_schedule."
  type        = string
  default     = "Etc/UTC"
}

variable "gc_grace_secs" {
  description = "GC_GRACE_SECS."
  type        = number
  default     = 86400
}

variable "upload_max_age_secs" {
  description = "UPLOAD_MAX_AGE_SECS."
  type        = number
  default     = 86400
}

variable "job_batch_size" {
  description = "JOB_BATCH_SIZE."
  type        = number
  default     = 500
}

# --- Events (README, "Events") -------------------------------------------------------------

variable "nats_url" {
  description = "NATS_URL: the NATS server(s) events are published to (null: no NATS). Kept in Secret Manager."
  type        = string
  default     = null
  sensitive   = true
}

variable "nats_subject_prefix" {
  description = "NATS_SUBJECT_PREFIX: events go to <prefix>.<action>."
  type        = string
  default     = "registry"
}

variable "nats_jetstream" {
  description = "NATS_JETSTREAM: auto, true or false."
  type        = string
  default     = "auto"

  validation {
    condition     = contains(["auto", "true", "false"], var.nats_jetstream)
    error_message = "nats_jetstream: auto, true or false."
  }
}

variable "nats_user" {
  description = "NATS_USER (with nats_password)."
  type        = string
  default     = null
}

variable "nats_password" {
  description = "NATS_PASSWORD (with nats_user). Kept in Secret Manager."
  type        = string
  default     = null
  sensitive   = true
}

variable "nats_token" {
  description = "NATS_TOKEN. Kept in Secret Manager."
  type        = string
  default     = null
  sensitive   = true
}

variable "nats_creds" {
  description = "The content of a NATS .creds file (user JWT and NKey seed), mounted as NATS_CREDS_FILE. Kept in Secret Manager."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhooks" {
  description = "The content of WEBHOOKS_FILE (JSON, README \"Events\"), mounted as a file. Kept in Secret Manager (endpoint headers may hold credentials)."
  type        = string
  default     = null
  sensitive   = true
}

variable "webhook_secrets" {
  description = "The variables the webhook endpoints' secret_env name, and their values (the signing secrets), each in Secret Manager."
  type        = map(string)
  default     = {}
  sensitive   = true

  validation {
    condition = alltrue([
      for name in keys(var.webhook_secrets) :
      can(regex("^[A-Z][A-Z0-9_]*$", name)) && !contains(["DATABASE_URL", "JWT_SECRET", "NATS_URL", "NATS_PASSWORD", "NATS_TOKEN", "INTERNAL_SECRET"], name)
    ])
    error_message = "webhook_secrets: keys are variable names (upper-case letters, digits, _), none of the registry's own secret variables."
  }
}

variable "events_max_attempts" {
  description = "EVENTS_MAX_ATTEMPTS."
  type        = number
  default     = 12
}

variable "events_retention_secs" {
  description = "EVENTS_RETENTION_SECS."
  type        = number
  default     = 86400
}

variable "events_pulls" {
  description = "EVENTS_PULLS: also record pulls as events."
  type        = bool
  default     = false
}

variable "deliver_events_schedule" {
  description = "Cron schedule (Cloud Scheduler syntax) of `jobs deliver-events`, which sends what the services could not send right after their commits. Scheduled only when a destination is configured."
  type        = string
  default     = "* * * * *"
}
