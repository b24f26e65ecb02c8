@chaos @serial
Feature: Chaos under load
  Entries arrive at a steady rate while every service→dependency link turns slow, silent and
  broken in turn, the identity provider rotates its signing key, retires the old one and goes
  down for a while, the consolidation's PostgreSQL, Redis and the consolidation service are
  each killed and restarted, SQS goes away for a while, and then answers the way AWS answers
  when it degrades (throttling, batches with failed entries, answers lost after the request was
  applied). Meanwhile clients read the balances. Every client retries what a 503 asks it to
  retry (a writer with the same Idempotency-Key), and gets a fresh token when a 401 says its
  key was retired. At the end nothing is lost and nothing is counted twice, every request was
  answered 201 or 200 in the end, and the clients' history holds: no client saw a balance go
  back on an answer not marked stale, every read lay between what was acknowledged before it
  started (allowing for the consolidation's lag) and what was sent before it ended, and the
  ledger lists every entry it acknowledged.
  (LocalStack's community edition keeps no messages across a restart, as SQS would: its outage
  is a SIGSTOP, during which every SQS call hangs and times out.)

  Scenario: Kill and restart each part of the consolidation side under load
    Given the platform is running on stacks of its own, the ledger's database apart, with an identity provider whose keys rotate
    And every service reaches every dependency through a fault proxy
    And 5 merchants send 20 entries per second in total
    And 4 clients read the merchants' balances 20 times per second in total
    When every link gets 200 ms of latency for 3 seconds
    And every link is blackholed for 2 seconds
    And every link resets its connections for 2 seconds
    And the identity provider rotates its signing key and retires the old one
    And the identity provider is down for 3 seconds
    And the consolidation's PostgreSQL is killed for 3 seconds and restarted
    And Redis is killed for 3 seconds and restarted
    And LocalStack is paused for 5 seconds and resumed
    And SQS throttles every call on the entries queue for 4 seconds
    And SQS fails 30% of the entries of every SendMessageBatch and DeleteMessageBatch for 4 seconds
    And SQS drops the answer to 30% of the SendMessageBatch and DeleteMessageBatch calls for 4 seconds
    And the consolidation service is killed for 3 seconds and restarted
    And the load stops
    Then the ledger answered every request with 201, after retries of 503s
    And every balance read was answered 200, after retries of 503s
    And tokens signed by the retired key were refused, and the clients' fresh tokens accepted
    And for every merchant and day the consolidated totals equal the ledger's sums
    And no client saw a balance go back on a fresh answer, every read lay within its validity window, and the ledger lists every acknowledged entry
