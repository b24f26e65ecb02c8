variable "name" {
  description = "Name prefix of the web ACL and its metrics."
  type        = string
}

variable "tags" {
  description = "Tags applied to the web ACL."
  type        = map(string)
  default     = {}
}
