#!/bin/bash
# LocalStack init hook (compose.yaml mounts this folder at /etc/localstack/init/ready.d): makes
# the entries queue and its dead-letter queue with the redrive policy, as terraform does on AWS.
# Idempotent: CreateQueue with the same attributes returns the existing queue.
set -euo pipefail

queue="${ENTRIES_QUEUE_NAME:-cashflow-entries}"
max_receive_count="${ENTRIES_MAX_RECEIVE_COUNT:-5}"

dlq_url=$(awslocal sqs create-queue --queue-name "${queue}-dlq" \
  --attributes MessageRetentionPeriod=1209600 --query QueueUrl --output text)
dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" \
  --attribute-names QueueArn --query Attributes.QueueArn --output text)
redrive=$(printf '{"deadLetterTargetArn":"%s","maxReceiveCount":"%s"}' "$dlq_arn" "$max_receive_count")
# Visibility 5 s, as terraform's queue module and the consumer's CONSUMER_VISIBILITY_SECONDS.
attributes=$(printf '{"VisibilityTimeout":"5","RedrivePolicy":%s}' \
  "$(printf '%s' "$redrive" | sed 's/"/\\"/g; s/^/"/; s/$/"/')")
queue_url=$(awslocal sqs create-queue --queue-name "$queue" --attributes "$attributes" \
  --query QueueUrl --output text)
echo "cashflow: queues ready: $queue_url (dead letters after $max_receive_count receives: $dlq_url)"
