variable "alias" {
  description = "Alias of the key, without the alias/ prefix."
  type        = string
}

variable "description" {
  description = "Description of the key."
  type        = string
}

variable "service_grants" {
  description = "AWS service principals allowed to use the key, each with its key policy statement ID, actions and condition block (operator => { key => value })."
  type = list(object({
    sid       = string
    service   = string
    actions   = list(string)
    condition = map(map(string))
  }))
  default = []
}

variable "tags" {
  description = "Tags applied to the key."
  type        = map(string)
  default     = {}
}
