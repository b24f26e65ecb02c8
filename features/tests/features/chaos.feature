@chaos @serial
Feature: Chaos under load
  Entries arrive at a steady rate while the consolidation's PostgreSQL, Redis and the
  consolidation service are each killed and restarted in turn, and SQS goes away for a while.
  At the end nothing is lost and nothing is counted twice, and the ledger answered every request.
  (LocalStack's community edition keeps no messages across a restart, as SQS would: its outage
  is a SIGSTOP, during which every SQS call hangs and times out.)

  Scenario: Kill and restart each part of the consolidation side under load
    Given the platform is running on stacks of its own, the ledger's database apart
    And 5 merchants send 20 entries per second in total
    When the consolidation's PostgreSQL is killed for 3 seconds and restarted
    And Redis is killed for 3 seconds and restarted
    And LocalStack is paused for 5 seconds and resumed
    And the consolidation service is killed for 3 seconds and restarted
    And the load stops
    Then the ledger answered every request with 201
    And for every merchant and day the consolidated totals equal the ledger's sums
