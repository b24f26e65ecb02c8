Feature: Resilience
  Recording keeps working when the consolidation, SQS or Redis is down, and nothing is lost.

  Scenario: The consolidation is down, the ledger records everything, balances catch up
    Given the platform is running
    And I am merchant "m1"
    When the consolidation service stops
    And I record 20 credits of "1.50"
    Then every answer was 201
    When the consolidation service starts again
    Then every balance equals the ledger's sums

  @own-stack
  Scenario: SQS is down, the outbox buffers, then drains
    Given the platform is running on a stack of its own
    And I am merchant "m1"
    When LocalStack is paused
    And I record 10 credits of "2.00"
    Then every answer was 201
    And the ledger's outbox holds 10 events
    When LocalStack resumes
    Then every balance equals the ledger's sums

  @own-stack
  Scenario: Redis is down, reads are still served
    Given the platform is running on a stack of its own
    And I am merchant "m1"
    And I recorded a credit of "12.00" today
    And the consolidation has caught up
    When Redis is killed
    Then the balance of today has closing "12.00"
    When Redis restarts
    Then the balance of today has closing "12.00"
