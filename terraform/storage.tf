# The bucket holding blobs (blobs/<algorithm>/<xx>/<hex>) and upload parts
# (uploads/<session>/...), under GCS_PREFIX. Private: clients download through V4 signed URLs.

resource "google_storage_bucket" "blobs" {
  name     = "${var.project}-${var.name}-blobs"
  location = coalesce(var.bucket_location, var.region)

  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  # Registry data is not removed with the infrastructure by accident.
  force_destroy = false

  # checkov:skip=CKV_GCP_62: access logs would log every blob download; Cloud Run request logs and Cloud Audit Logs cover access.
  # checkov:skip=CKV_GCP_78: no versioning: blobs are content-addressed and never rewritten; deletions are protected by the soft-delete policy below.

  soft_delete_policy {
    retention_duration_seconds = var.bucket_soft_delete_days * 86400
  }

  # A backstop behind the upload-cleanup job: parts (and compose intermediates) of uploads
  # abandoned for longer than any upload may take.
  lifecycle_rule {
    condition {
      age            = var.upload_parts_max_age_days
      matches_prefix = ["${local.object_prefix}uploads/"]
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.api]
}

locals {
  # GCS_PREFIX as the registry applies it: empty, or ending with exactly one slash.
  object_prefix = trimsuffix(var.gcs_prefix, "/") == "" ? "" : "${trimsuffix(var.gcs_prefix, "/")}/"
}
