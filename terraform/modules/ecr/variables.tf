variable "name" {
  description = "Name prefix of the KMS key."
  type        = string
}

variable "repositories" {
  description = "Repository names (the CI pipeline pushes cashflow/ledger and cashflow/consolidation)."
  type        = list(string)
  default     = ["cashflow/ledger", "cashflow/consolidation"]
}

variable "keep_tagged_images" {
  description = "How many tagged images each repository keeps (older ones expire)."
  type        = number
  default     = 50
}

variable "untagged_expiry_days" {
  description = "Days after which untagged images expire."
  type        = number
  default     = 7
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
