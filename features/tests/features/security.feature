Feature: Security
  Every call needs a valid token for the merchant, with the right scope.

  Background:
    Given the platform is running

  Scenario Outline: Bad credentials are refused and change nothing
    When merchant "m1" records a credit with <credentials>
    Then the answer is <status>
    And the ledger holds 0 entries

    Examples:
      | credentials                    | status |
      | no token                       | 401    |
      | an expired token               | 401    |
      | a token for another audience   | 401    |
      | a token for merchant "m2"      | 403    |
      | a token without entries:write  | 403    |

  Scenario: A merchant cannot read another merchant's balance
    When merchant "m2" reads the balance of merchant "m1"
    Then the answer is 403
