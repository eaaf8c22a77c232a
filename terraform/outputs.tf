output "registry_url" {
  description = "Where clients reach the registry (docker login <domain>)."
  value       = "https://${var.domain}"
}

output "lb_ipv4" {
  description = "The load balancer's IPv4 address: the domain's A record."
  value       = google_compute_global_address.lb["IPV4"].address
}

output "lb_ipv6" {
  description = "The load balancer's IPv6 address: the domain's AAAA record."
  value       = google_compute_global_address.lb["IPV6"].address
}

output "bucket" {
  description = "The blob bucket."
  value       = google_storage_bucket.blobs.name
}

output "cloudsql_connection_name" {
  description = "The Cloud SQL instance's connection name (null with an existing database_url)."
  value       = local.cloudsql_connection
}

output "services" {
  description = "Cloud Run service names."
  value       = { for k, s in google_cloud_run_v2_service.service : k => s.name }
}

output "migrate_job" {
  description = "The Cloud Run job that applies migrations (gcloud run jobs execute <name> --wait)."
  value       = google_cloud_run_v2_job.job["migrate"].name
}

output "service_accounts" {
  description = "Service account e-mail per service and job."
  value       = merge({ for k, a in google_service_account.runtime : k => a.email }, { scheduler = google_service_account.scheduler.email })
}
