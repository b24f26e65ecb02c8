//! Step definitions of `security.feature`.

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
use crate::world::*;

#[when(regex = r#"^merchant "([^"]*)" records a credit with (.+)$"#)]
pub(crate) async fn record_with_credentials(
    w: &mut Platform,
    merchant: String,
    credentials: String,
) {
    let system = w.system();
    let identity = system.placement().ledger.identity();
    let good = || identity.token().merchant(merchant.clone());
    let token = match credentials.as_str() {
        "no token" => None,
        "an expired token" => Some(
            good()
                .scope("entries:write")
                .flaw(TokenFlaw::Expired)
                .mint(),
        ),
        "a token for another audience" => Some(
            good()
                .scope("entries:write")
                .flaw(TokenFlaw::WrongAudience)
                .mint(),
        ),
        "a token for merchant \"m2\"" => Some(
            identity
                .token()
                .merchant("m2")
                .scope("entries:write")
                .mint(),
        ),
        "a token without entries:write" => Some(good().scope("entries:read").mint()),
        other => panic!("unknown credentials: {other}"),
    };
    let mut request = system
        .http()
        .post(format!(
            "{}/v1/merchants/{merchant}/entries",
            system.ledger_url()
        ))
        .json(&json!({"kind": "credit", "amount": "1.00", "currency": "BRL"}));
    if let Some(token) = token {
        request = request.bearer_auth(token.expect("token"));
    }
    let response = request.send().await.expect("POST");
    let status = response.status().as_u16();
    w.last = Some((status, response.json().await.unwrap_or(Value::Null)));
}

#[when(regex = r#"^merchant "([^"]*)" reads the balance of merchant "([^"]*)"$"#)]
pub(crate) async fn read_other(w: &mut Platform, reader: String, owner: String) {
    let system = w.system();
    let token = system.token(&reader, &["balances:read"]).expect("token");
    let (status, body) = system
        .balance(&owner, &token, &format(today()))
        .await
        .expect("GET");
    w.last = Some((status, body));
}
