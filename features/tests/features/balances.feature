Feature: Balances and the daily report
  The consolidation keeps each day's balance; opening and closing carry across days.

  Background:
    Given the platform is running
    And I am merchant "m1"

  Scenario: Opening and closing balances across days
    Given I recorded a credit of "200.00" 3 days ago
    And I recorded a credit of "100.10" today
    And I recorded a debit of "30.05" today
    When the consolidation has caught up
    Then the balance of today has opening "200.00", credits "100.10", debits "30.05" and closing "270.05"
    And the balance of 1 days ago has opening "200.00" and closing "200.00"

  Scenario: A backdated entry moves every later closing balance
    Given I recorded a credit of "100.00" 2 days ago
    And the consolidation has caught up
    And the balance of today has closing "100.00"
    When I record a debit of "40.00" dated 1 days ago
    And the consolidation has caught up
    Then the balance of 1 days ago has opening "100.00" and closing "60.00"
    And the balance of today has closing "60.00"

  Scenario: The report as CSV
    Given I recorded a credit of "10.00" 1 days ago
    And I recorded a debit of "2.50" today
    When the consolidation has caught up
    And I ask for the report from 1 days ago to today as CSV
    Then the CSV has a header and 2 days
    And the CSV line for today ends with closing "7.50"
