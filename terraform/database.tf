# Metadata database: a Cloud SQL PostgreSQL instance reached through the Cloud SQL connector's
# unix socket (/cloudsql/<connection name>), or an existing database given as database_url.

locals {
  create_db = var.database_url == null
  # The connection name mounted at /cloudsql in every service and job (null: none).
  cloudsql_connection = local.create_db ? google_sql_database_instance.main[0].connection_name : var.existing_cloudsql_instance
  database_url = local.create_db ? format(
    "postgres://%s:%s@/%s?host=/cloudsql/%s",
    google_sql_user.registry[0].name,
    urlencode(random_password.db[0].result),
    google_sql_database.registry[0].name,
    google_sql_database_instance.main[0].connection_name,
  ) : var.database_url
}

resource "google_sql_database_instance" "main" {
  count = local.create_db ? 1 : 0

  name                = "${var.name}-pg"
  database_version    = var.db_version
  region              = var.region
  deletion_protection = var.deletion_protection

  # checkov:skip=CKV_GCP_60: the public IP has no authorized networks; only the Cloud SQL connector (IAM cloudsql.client, TLS) reaches it, which spares a VPC and a serverless connector.
  # checkov:skip=CKV_GCP_6: ssl_mode ENCRYPTED_ONLY refuses unencrypted connections; client certificates are the connector's business.
  # checkov:skip=CKV_GCP_110: pgAudit is not needed: the registry is the only client and logs every request itself.
  # checkov:skip=CKV_GCP_111: log_statement would log every query of every pull; errors are logged (log_min_error_statement).
  # checkov:skip=CKV2_GCP_13: log_duration would log the duration of every statement of every request; slow ones are the concern, and Query Insights can be turned on for them.
  # checkov:skip=CKV_GCP_79: the version is a variable (POSTGRES_16 by default); the registry supports PostgreSQL 13 and later.

  settings {
    tier              = var.db_tier
    edition           = "ENTERPRISE"
    availability_type = var.db_availability_type
    disk_autoresize   = true
    disk_type         = "PD_SSD"

    ip_configuration {
      ipv4_enabled = true
      ssl_mode     = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "03:00"
    }

    database_flags {
      name  = "max_connections"
      value = tostring(var.db_max_connections)
    }
    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "cloudsql.enable_pgaudit"
      value = "off"
    }
  }

  depends_on = [google_project_service.api]
}

resource "google_sql_database" "registry" {
  count = local.create_db ? 1 : 0

  name     = "registry"
  instance = google_sql_database_instance.main[0].name
}

resource "random_password" "db" {
  count = local.create_db ? 1 : 0

  length  = 40
  special = false
}

resource "google_sql_user" "registry" {
  count = local.create_db ? 1 : 0

  name     = "registry"
  instance = google_sql_database_instance.main[0].name
  password = random_password.db[0].result
}
