variable "cluster_name" {
  description = "Name of the EKS cluster."
  type        = string
}

variable "kubernetes_version" {
  description = "Kubernetes minor version of the control plane and the node group (must be in EKS standard support: aws eks describe-cluster-versions)."
  type        = string
  default     = "1.35"
}

variable "vpc_id" {
  description = "ID of the VPC the cluster runs in."
  type        = string
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC (node security group egress inside the VPC)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets for the control plane ENIs and the node group."
  type        = list(string)
}

variable "endpoint_public_access" {
  description = "Expose the API server endpoint publicly, restricted to public_access_cidrs (the private endpoint is always on)."
  type        = bool
  default     = true
}

variable "public_access_cidrs" {
  description = "CIDRs allowed to reach the public API server endpoint (operators, CI runners). Never 0.0.0.0/0."
  type        = list(string)

  validation {
    condition     = !contains(var.public_access_cidrs, "0.0.0.0/0")
    error_message = "The public endpoint must be restricted: 0.0.0.0/0 is not allowed."
  }
}

variable "node_instance_types" {
  description = "Instance types of the managed node group."
  type        = list(string)
  default     = ["m6i.large"]
}

variable "node_desired_size" {
  description = "Desired number of nodes."
  type        = number
  default     = 3
}

variable "node_min_size" {
  description = "Minimum number of nodes."
  type        = number
  default     = 3
}

variable "node_max_size" {
  description = "Maximum number of nodes."
  type        = number
  default     = 6
}

variable "node_disk_size_gb" {
  description = "Root volume size of each node, in GiB."
  type        = number
  default     = 50
}

variable "logs_kms_key_arn" {
  description = "KMS key ARN that encrypts the control-plane log group."
  type        = string
}

variable "log_retention_days" {
  description = "Retention of the control-plane log group, in days."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags applied to every resource."
  type        = map(string)
  default     = {}
}
