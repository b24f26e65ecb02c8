Feature: Recording entries
  A merchant records credits and debits in the ledger; bad input is refused and changes nothing.

  Background:
    Given the platform is running
    And I am merchant "m1"

  Scenario: Record a credit
    When I record a credit of "100.10" described as "card sale"
    Then the answer is 201
    And the entry reads back with amount "100.10" and kind "credit"

  Scenario: Record a debit
    When I record a debit of "30.05" described as "supplier"
    Then the answer is 201
    And the entry reads back with amount "30.05" and kind "debit"

  Scenario Outline: Invalid entries are refused with the field named
    When I record the entry <body>
    Then the answer is <status>
    And the problem names the field "<field>"
    And the ledger holds 0 entries

    Examples:
      | body                                                              | status | field         |
      | {"kind": "credit", "amount": "0.00", "currency": "BRL"}           | 422    | amount        |
      | {"kind": "credit", "amount": "-1.00", "currency": "BRL"}          | 422    | amount        |
      | {"kind": "credit", "amount": "1.001", "currency": "BRL"}          | 422    | amount        |
      | {"kind": "credit", "amount": 10, "currency": "BRL"}               | 422    | amount        |
      | {"kind": "transfer", "amount": "1.00", "currency": "BRL"}         | 422    | kind          |
      | {"kind": "credit", "amount": "1.00", "currency": "XYZ"}           | 422    | currency      |
      | {"kind": "credit", "amount": "1.00", "currency": "BRL", "x": 1}   | 422    | x             |
      | {"kind": "credit", "amount": "1.00", "currency": "BRL", "business_date": "2999-01-01"} | 422 | business_date |

  Scenario: A retried request with the same Idempotency-Key records once
    When I record a credit of "50.00" with Idempotency-Key "retry-1"
    And I record a credit of "50.00" with Idempotency-Key "retry-1"
    Then both answers are the same entry
    And the ledger holds 1 entries

  Scenario: Reverse an entry once
    When I record a credit of "80.00" described as "mistake"
    And I reverse that entry
    Then the answer is 201
    And the reversal is a debit of "80.00"
    When I reverse that entry again
    Then the answer is 409
