# CloudFront's web ACL (scope CLOUDFRONT: created in us-east-1, whatever the stack's region; the
# caller passes a us-east-1 provider). AWS's managed common and known-bad-inputs rule groups.

resource "aws_wafv2_web_acl" "this" {
  #checkov:skip=CKV2_AWS_31:Requests are sampled and counted per rule (visibility_config); full WAF logging would need a log destination in us-east-1 and is left to the operator.
  name        = "${var.name}-edge"
  description = "Edge protection of the page and the API behind CloudFront"
  scope       = "CLOUDFRONT"

  default_action {
    allow {}
  }

  rule {
    name     = "common"
    priority = 1

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesCommonRuleSet"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-edge-common"
      sampled_requests_enabled   = true
    }
  }

  rule {
    # Includes the Log4j (CVE-2021-44228) rules.
    name     = "known-bad-inputs"
    priority = 2

    override_action {
      none {}
    }

    statement {
      managed_rule_group_statement {
        name        = "AWSManagedRulesKnownBadInputsRuleSet"
        vendor_name = "AWS"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name}-edge-known-bad-inputs"
      sampled_requests_enabled   = true
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name}-edge"
    sampled_requests_enabled   = true
  }

  tags = var.tags
}
