# Secret Manager: the database URL, the authentication material of the chosen AUTH_MODE, and
# the events' destinations (NATS URL and credentials, the webhooks file and its secrets).
# Values handed to the services as environment variables (env_secrets) or mounted as files
# under /secrets/<key>/<key> (file_secrets, whose path goes in the named *_FILE variable).
# Everything here is also in the Terraform state: keep the state bucket as private as these.

locals {
  token     = var.auth_mode == "token"
  file_auth = contains(["basic", "token"], var.auth_mode)

  # The registry issues its own tokens (AUTH_RULES_FILE given) and nothing else signs them.
  generate_jwt_secret = local.token && var.auth_rules != null && nonsensitive(var.jwt_secret == null) && nonsensitive(var.token_signing_key == null)
  use_jwt_secret      = local.token && (local.generate_jwt_secret || nonsensitive(var.jwt_secret != null))

  # Environment variable => secret key, for the secrets handed over as variables.
  secret_env_vars = {
    DATABASE_URL  = "database-url"
    JWT_SECRET    = "jwt-secret"
    NATS_URL      = "nats-url"
    NATS_PASSWORD = "nats-password"
    NATS_TOKEN    = "nats-token"
    # The api service's job endpoints (POST /internal/…), for schedulers that call URLs.
    INTERNAL_SECRET = "internal-secret"
  }
  # Secret key => the variable naming the file it is mounted as.
  secret_file_vars = {
    "htpasswd"          = "HTPASSWD_FILE"
    "auth-rules"        = "AUTH_RULES_FILE"
    "token-signing-key" = "TOKEN_SIGNING_KEY_FILE"
    "jwt-public-keys"   = "JWT_PUBLIC_KEYS_FILE"
    "nats-creds"        = "NATS_CREDS_FILE"
    "webhooks"          = "WEBHOOKS_FILE"
  }

  # Which of them this configuration uses.
  secret_in_use = {
    "database-url"      = true
    "jwt-secret"        = local.use_jwt_secret
    "htpasswd"          = local.file_auth && nonsensitive(var.htpasswd != null)
    "auth-rules"        = local.file_auth && var.auth_rules != null
    "token-signing-key" = local.token && nonsensitive(var.token_signing_key != null)
    "jwt-public-keys"   = local.token && var.jwt_public_keys != null
    "nats-url"          = local.nats
    "nats-password"     = local.nats && nonsensitive(var.nats_password != null)
    "nats-token"        = local.nats && nonsensitive(var.nats_token != null)
    "nats-creds"        = local.nats && nonsensitive(var.nats_creds != null)
    "webhooks"          = nonsensitive(var.webhooks != null)
    "internal-secret"   = nonsensitive(var.internal_secret != null)
  }

  # Events: NATS configured, and the signing secrets of the webhooks (variable => secret key).
  nats           = nonsensitive(var.nats_url != null)
  events_enabled = local.nats || nonsensitive(var.webhooks != null)
  webhook_secret_vars = {
    for variable in nonsensitive(keys(var.webhook_secrets)) :
    variable => "webhook-${replace(lower(variable), "_", "-")}"
  }

  env_secrets = merge(
    { for variable, key in local.secret_env_vars : variable => key if local.secret_in_use[key] },
    local.webhook_secret_vars,
  )
  file_secrets = { for key, variable in local.secret_file_vars : key => variable if local.secret_in_use[key] }

  # The ones the jobs that send events get (deliver-events, run-all).
  event_secret_keys  = setunion(["nats-url", "nats-password", "nats-token", "nats-creds", "webhooks"], values(local.webhook_secret_vars))
  event_env_secrets  = { for variable, key in local.env_secrets : variable => key if contains(local.event_secret_keys, key) }
  event_file_secrets = { for key, variable in local.file_secrets : key => variable if contains(local.event_secret_keys, key) }

  secret_keys = setunion(toset(values(local.env_secrets)), toset(keys(local.file_secrets)))

  secret_data = {
    "database-url"      = local.database_url
    "jwt-secret"        = local.generate_jwt_secret ? try(random_password.jwt[0].result, "") : var.jwt_secret
    htpasswd            = var.htpasswd
    "auth-rules"        = var.auth_rules
    "token-signing-key" = var.token_signing_key
    "jwt-public-keys"   = var.jwt_public_keys
    "nats-url"          = var.nats_url
    "nats-password"     = var.nats_password
    "nats-token"        = var.nats_token
    "nats-creds"        = var.nats_creds
    "webhooks"          = var.webhooks
    "internal-secret"   = var.internal_secret
  }
  webhook_secret_data = { for variable, key in local.webhook_secret_vars : key => var.webhook_secrets[variable] }
}

resource "random_password" "jwt" {
  count = local.generate_jwt_secret ? 1 : 0

  length  = 64
  special = false
}

resource "google_secret_manager_secret" "secret" {
  for_each = local.secret_keys

  secret_id = "${var.name}-${each.key}"

  # checkov:skip=CKV_GCP_128: Google-managed encryption keys; a customer-managed key is a choice for the operator, not a default.

  replication {
    auto {}
  }

  depends_on = [google_project_service.api]
}

resource "google_secret_manager_secret_version" "secret" {
  for_each = local.secret_keys

  secret      = google_secret_manager_secret.secret[each.key].id
  secret_data = merge(local.secret_data, local.webhook_secret_data)[each.key]
}
