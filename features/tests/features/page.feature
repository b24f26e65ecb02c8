@browser
Feature: The cash-flow page
  A merchant signs in through the identity provider's form, records entries and sees the month,
  in a real browser (Debian's Chromium, headless, over WebDriver). The page says what the
  architecture implies: entries not in the balance yet, and the consolidation down while entries
  are still accepted. A failed step leaves a screenshot and the console log under target/page/.

  Scenario: A merchant's day on the page, through a consolidation outage
    Given the platform is running
    And the page is served in front of it
    When merchant "m1" signs in on the page through the identity provider's form
    And records on the page a credit of "150.50" and a debit of "50.00"
    Then the page's month shows a closing balance of "100.50" and today's bars
    And the page shows money and dates in Portuguese and in English
    And the page has no serious accessibility violations
    When the consolidation service stops
    Then the page says the consolidation is unavailable and entries are still accepted
    When the merchant records on the page a credit of "10.00"
    Then the page counts 1 entry not in the balance yet
    When the merchant reloads the page and records a credit of "5.00" with the keyboard alone
    Then the page counts 2 entries not in the balance yet
    When the consolidation service starts again
    Then the page counts 0 entries not in the balance yet and a closing balance of "115.50"
    When the ledger's answer to an entry of "7.00" is lost and the merchant sends it again
    Then the ledger recorded the entry of "7.00" once
    And the page's month shows a closing balance of "122.50"
    When the merchant reverses the entry of "7.00" on the page
    Then the page's month shows a closing balance of "115.50"
    When the merchant opens the page of merchant "m2"
    Then the page answers 403
    When the merchant reloads the page
    Then the merchant is still signed in, and the page refreshed its token before it expired
    When the merchant logs out on the page
    Then the page asks to sign in again and the old session is over
    And the page has no serious accessibility violations
