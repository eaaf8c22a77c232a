# Secret Manager: the database URL, and the authentication material of the chosen AUTH_MODE.
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
    DATABASE_URL = "database-url"
    JWT_SECRET   = "jwt-secret"
  }
  # Secret key => the variable naming the file it is mounted as.
  secret_file_vars = {
    "htpasswd"          = "HTPASSWD_FILE"
    "auth-rules"        = "AUTH_RULES_FILE"
    "token-signing-key" = "TOKEN_SIGNING_KEY_FILE"
    "jwt-public-keys"   = "JWT_PUBLIC_KEYS_FILE"
  }

  # Which of them this configuration uses.
  secret_in_use = {
    "database-url"      = true
    "jwt-secret"        = local.use_jwt_secret
    "htpasswd"          = local.file_auth && nonsensitive(var.htpasswd != null)
    "auth-rules"        = local.file_auth && var.auth_rules != null
    "token-signing-key" = local.token && nonsensitive(var.token_signing_key != null)
    "jwt-public-keys"   = local.token && var.jwt_public_keys != null
  }
  env_secrets  = { for variable, key in local.secret_env_vars : variable => key if local.secret_in_use[key] }
  file_secrets = { for key, variable in local.secret_file_vars : key => variable if local.secret_in_use[key] }

  secret_keys = setunion(toset(values(local.env_secrets)), toset(keys(local.file_secrets)))

  secret_data = {
    "database-url"      = local.database_url
    "jwt-secret"        = local.generate_jwt_secret ? try(random_password.jwt[0].result, "") : var.jwt_secret
    htpasswd            = var.htpasswd
    "auth-rules"        = var.auth_rules
    "token-signing-key" = var.token_signing_key
    "jwt-public-keys"   = var.jwt_public_keys
  }
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
  secret_data = local.secret_data[each.key]
}
