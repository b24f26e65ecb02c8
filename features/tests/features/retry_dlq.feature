Feature: Retry with backoff and the dead-letter queue

  Background:
    Given the platform is running with maxReceiveCount 3
    And I am merchant "m1"

  Scenario: A transient database failure recovers with backoff
    Given the consolidation's database fails every write for merchant "m1" as a transient error
    When I record a credit of "5.00" described as "during the outage"
    Then the consolidation retries it with a growing backoff
    When the consolidation's database recovers
    Then every balance equals the ledger's sums

  Scenario: A poison message goes to the DLQ with its reason, and redrive after the fix
    Given the consolidation's database fails every write for merchant "m1" as a transient error
    When I record a credit of "7.00" described as "always failing"
    Then the DLQ holds 1 message with reason "max-receive-count-exceeded"
    When the consolidation's database recovers
    And an operator redrives the DLQ
    Then every balance equals the ledger's sums

  Scenario: A malformed message goes to the DLQ at once with its reason
    When a malformed message arrives on the queue
    Then the DLQ holds 1 message with reason "malformed-json"

  Scenario: A duplicate delivery is counted once
    When I record a credit of "9.00" described as "once"
    And the consolidation has caught up
    And that entry's event is delivered again
    Then the consolidation counted 1 duplicate
    And every balance equals the ledger's sums
