Feature: Self-healing consolidation
  The ledger is the source of truth. Whatever the broker loses between the two services, the
  consolidation's reconciler finds the merchant-days that differ from the ledger's digests, has
  the ledger replay their events (same event ids, so nothing is counted twice) and the balances
  read over HTTP equal the ledger's sums again, within the reconcile interval plus a margin.

  Scenario: The broker loses the events that piled up while the consumer was down
    Given the platform is running with the reconciler every 2 seconds
    And I am merchant "heal-m1"
    When the consolidation service stops
    And I record 5 credits of "10.00"
    And every event is waiting in SQS
    And the broker loses every message of the entries queue
    And the consolidation service starts again
    Then within 30 seconds every balance equals the ledger's sums
    And the reconciler found and repaired at least 1 merchant-day

  Scenario: The broker is killed with the events that piled up while the consumer was down
    Given the platform is running on a stack of its own with the reconciler every 2 seconds
    And I am merchant "heal-m3"
    When the consolidation service stops
    And I record 5 credits of "10.00"
    And every event is waiting in SQS
    And the broker is killed and starts again empty
    And the consolidation service starts again
    Then within 30 seconds every balance equals the ledger's sums
    And the reconciler found and repaired at least 1 merchant-day

  Scenario: A replay run twice in a row counts nothing twice
    Given the platform is running with the reconciler every 2 seconds
    And I am merchant "heal-m2"
    And I recorded a credit of "25.00" today
    And the consolidation has caught up
    When the ledger replays today's events of "heal-m2" twice
    Then the consolidation counted 2 duplicate
    And every balance equals the ledger's sums
