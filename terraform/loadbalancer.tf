# The global external Application Load Balancer in front of the services: serverless NEGs and
# backend services, the URL map built from routes.json (the same table the Rust routing test
# replays: tests/tests/routing.rs), a Google-managed certificate, HTTPS on 443 and a redirect
# from HTTP on 80, on one IPv4 and one IPv6 address.

locals {
  # Read, never copied: terraform/routes.json is the route table.
  routes = jsondecode(file("${path.module}/routes.json"))
}

resource "google_compute_global_address" "lb" {
  for_each = toset(["IPV4", "IPV6"])

  name       = "${var.name}-lb-${lower(each.key)}"
  ip_version = each.key

  depends_on = [google_project_service.api]
}

resource "google_compute_region_network_endpoint_group" "service" {
  for_each = var.services

  name                  = "${var.name}-${each.key}"
  region                = var.region
  network_endpoint_type = "SERVERLESS"

  cloud_run {
    service = google_cloud_run_v2_service.service[each.key].name
  }
}

resource "google_compute_backend_service" "service" {
  # The URL map names backends by the service names of routes.json.
  for_each = toset(local.routes.services)

  name                  = "${var.name}-${each.key}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  protocol              = "HTTPS"

  backend {
    group = google_compute_region_network_endpoint_group.service[each.key].id
  }

  log_config {
    enable      = true
    sample_rate = 1
  }
}

resource "google_compute_url_map" "https" {
  name            = "${var.name}-https"
  default_service = google_compute_backend_service.service[local.routes.default_service].id

  host_rule {
    hosts        = [var.domain]
    path_matcher = "registry"
  }

  path_matcher {
    name            = "registry"
    default_service = google_compute_backend_service.service[local.routes.default_service].id

    dynamic "route_rules" {
      for_each = local.routes.route_rules
      content {
        # routes.json's descriptions are for people: the provider's route_rules has no such field.
        priority = route_rules.value.priority
        service  = google_compute_backend_service.service[route_rules.value.service].id

        dynamic "match_rules" {
          for_each = route_rules.value.match_rules
          content {
            prefix_match        = lookup(match_rules.value, "prefix_match", null)
            full_path_match     = lookup(match_rules.value, "full_path_match", null)
            path_template_match = lookup(match_rules.value, "path_template_match", null)

            dynamic "header_matches" {
              for_each = lookup(match_rules.value, "header_matches", [])
              content {
                header_name   = header_matches.value.header_name
                exact_match   = lookup(header_matches.value, "exact_match", null)
                prefix_match  = lookup(header_matches.value, "prefix_match", null)
                present_match = lookup(header_matches.value, "present_match", null)
              }
            }

            dynamic "query_parameter_matches" {
              for_each = lookup(match_rules.value, "query_parameter_matches", [])
              content {
                name          = query_parameter_matches.value.name
                exact_match   = lookup(query_parameter_matches.value, "exact_match", null)
                present_match = lookup(query_parameter_matches.value, "present_match", null)
              }
            }
          }
        }
      }
    }
  }
}

resource "google_compute_managed_ssl_certificate" "registry" {
  name = "${var.name}-cert"

  managed {
    domains = [var.domain]
  }

  lifecycle {
    create_before_destroy = true
  }

  depends_on = [google_project_service.api]
}

resource "google_compute_ssl_policy" "modern" {
  name            = "${var.name}-tls"
  profile         = "MODERN"
  min_tls_version = "TLS_1_2"

  depends_on = [google_project_service.api]
}

resource "google_compute_target_https_proxy" "registry" {
  name             = "${var.name}-https"
  url_map          = google_compute_url_map.https.id
  ssl_certificates = [google_compute_managed_ssl_certificate.registry.id]
  ssl_policy       = google_compute_ssl_policy.modern.id
}

resource "google_compute_url_map" "http_redirect" {
  name = "${var.name}-http-redirect"

  default_url_redirect {
    https_redirect         = true
    strip_query            = false
    redirect_response_code = "MOVED_PERMANENTLY_DEFAULT"
  }
}

resource "google_compute_target_http_proxy" "redirect" {
  name    = "${var.name}-http-redirect"
  url_map = google_compute_url_map.http_redirect.id
}

resource "google_compute_global_forwarding_rule" "https" {
  for_each = google_compute_global_address.lb

  name                  = "${var.name}-https-${lower(each.key)}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = each.value.id
  port_range            = "443"
  target                = google_compute_target_https_proxy.registry.id
}

resource "google_compute_global_forwarding_rule" "http" {
  for_each = google_compute_global_address.lb

  name                  = "${var.name}-http-${lower(each.key)}"
  load_balancing_scheme = "EXTERNAL_MANAGED"
  ip_address            = each.value.id
  port_range            = "80"
  target                = google_compute_target_http_proxy.redirect.id
}
