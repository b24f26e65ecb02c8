//! The services' configurations for the scenarios that run one in this process: the tests'
//! (testkit), changed only where a scenario needs it to.

/// A consolidation on the scope's database that does not consume: Redis on (with the key prefix
/// `name` of its own) or refused at once (nothing listens on port 1).
pub fn consolidation_config(
    stack: &harness::Stack,
    scope: &harness::Scope,
    cache: bool,
    name: &str,
) -> consolidation::Config {
    let mut config = testkit::consolidation_config(scope, scope, stack.identity().auth_config());
    if !cache {
        config.redis_url = "redis://127.0.0.1:1".into();
    }
    config.redis_prefix = format!("{}{name}:", scope.redis_prefix);
    config.consumer.enabled = false;
    config.reconcile = Default::default();
    config
}
