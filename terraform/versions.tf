# Provider and Terraform versions. The offline checks (scripts/check-deploy.sh) validate every
# block and attribute against the schema of google provider 6.50, hence the pin.

terraform {
  required_version = ">= 1.5"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = "~> 6.50"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # State lives in a GCS bucket created once by hand (docs/deploy.md, "Bootstrap"):
  #   terraform init -backend-config="bucket=<state bucket>"
  backend "gcs" {
    prefix = "registry"
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
