terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.82"
    }
  }

  # Remote state (docs/deploy.md, "Bootstrap the state bucket"). Create the
  # bucket and the lock table once, then uncomment and run `terraform init`
  # (or `terraform init -migrate-state` if you already applied with local state).
  #
  # backend "s3" {
  #   bucket         = "cashflow-terraform-state-<account-id>"
  #   key            = "prod/terraform.tfstate"
  #   region         = "us-east-1"
  #   encrypt        = true
  #   kms_key_id     = "alias/cashflow-terraform-state"
  #   dynamodb_table = "cashflow-terraform-locks"
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      Project     = "cashflow"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}

# CloudFront's certificate and web ACL live in us-east-1 (module web).
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"

  default_tags {
    tags = {
      Project     = "cashflow"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}
