//! What the actions do to request and answer bodies: the batch entries that fail and the
//! answer that lists them, the messages a receive delivers twice or out of order. Pure
//! functions on JSON; the server decides when to call them.

use rand::seq::SliceRandom;
use serde_json::{Value, json};

use super::protocol::AwsError;

/// Removes `share` of a batch request's `Entries` (rounded up, so at least one; chosen at
/// random) and returns their ids: the layer forwards the others only.
pub(super) fn fail_entries(request: &mut Value, share: f64) -> Vec<String> {
    let Some(entries) = request.get_mut("Entries").and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    let count = ((entries.len() as f64) * share).ceil() as usize;
    let count = count.clamp(usize::from(!entries.is_empty()), entries.len());
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.shuffle(&mut rand::thread_rng());
    let mut failing: Vec<usize> = order.into_iter().take(count).collect();
    failing.sort_unstable();
    let mut failed = Vec::with_capacity(count);
    for index in failing.into_iter().rev() {
        let entry = entries.remove(index);
        failed.push(
            entry
                .get("Id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        );
    }
    failed.reverse();
    failed
}

/// Whether a batch request has entries left to forward.
pub(super) fn has_entries(request: &Value) -> bool {
    request
        .get("Entries")
        .and_then(Value::as_array)
        .is_some_and(|entries| !entries.is_empty())
}

/// The answer of a batch whose every entry failed (HTTP 200, as SQS answers it).
pub(super) fn all_failed(failed: &[String], error: AwsError) -> Value {
    let mut answer = json!({"Successful": [], "Failed": []});
    add_failed(&mut answer, failed, error);
    answer
}

/// Lists `failed` entries under the answer's `Failed`, after those SQS itself refused.
pub(super) fn add_failed(answer: &mut Value, failed: &[String], error: AwsError) {
    let Some(object) = answer.as_object_mut() else {
        return;
    };
    let list = object.entry("Failed").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut() {
        list.extend(failed.iter().map(|id| error.entry(id)));
    }
}

/// `MaxNumberOfMessages` of a receive (SQS's default is 1).
pub(super) fn max_messages(request: &Value) -> usize {
    request
        .get("MaxNumberOfMessages")
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
        .clamp(1, 10)
}

/// The messages of a receive's answer (an empty answer may have no `Messages`).
pub(super) fn messages(answer: &Value) -> &[Value] {
    answer
        .get("Messages")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// The messages of a receive's answer, to change.
pub(super) fn messages_mut(answer: &mut Value) -> Option<&mut Vec<Value>> {
    answer.get_mut("Messages").and_then(Value::as_array_mut)
}

/// A receive's answer delivering `messages`.
pub(super) fn receive_answer(messages: Vec<Value>) -> Value {
    json!({ "Messages": messages })
}

/// Reverses a receive's messages and takes out the one that came first, for a later receive.
pub(super) fn reorder(messages: &mut Vec<Value>) -> Option<Value> {
    if messages.is_empty() {
        return None;
    }
    let first = messages.remove(0);
    messages.reverse();
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::super::protocol::INTERNAL_FAILURE;
    use super::*;

    fn batch(n: usize) -> Value {
        let entries: Vec<Value> = (0..n)
            .map(|i| json!({"Id": i.to_string(), "MessageBody": "x"}))
            .collect();
        json!({"QueueUrl": "q", "Entries": entries})
    }

    #[test]
    fn a_share_of_entries_fails_and_the_rest_is_forwarded() {
        let mut request = batch(10);
        let failed = fail_entries(&mut request, 0.3);
        assert_eq!(failed.len(), 3);
        let left: Vec<&str> = request["Entries"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["Id"].as_str().expect("id"))
            .collect();
        assert_eq!(left.len(), 7);
        assert!(failed.iter().all(|id| !left.contains(&id.as_str())));

        let mut one = batch(1);
        assert_eq!(fail_entries(&mut one, 0.1), ["0"]);
        assert!(!has_entries(&one));
        let answer = all_failed(&["0".into()], INTERNAL_FAILURE);
        assert_eq!(answer["Failed"][0]["Code"], "InternalFailure");
        assert_eq!(answer["Failed"][0]["SenderFault"], false);
        assert_eq!(answer["Successful"], json!([]));
    }

    #[test]
    fn failed_entries_join_those_sqs_refused() {
        let mut answer = json!({"Successful": [{"Id": "1"}], "Failed": [{"Id": "2"}]});
        add_failed(&mut answer, &["3".into()], INTERNAL_FAILURE);
        assert_eq!(answer["Failed"].as_array().expect("failed").len(), 2);
        let mut bare = json!({"Successful": [{"Id": "1"}]});
        add_failed(&mut bare, &["3".into()], INTERNAL_FAILURE);
        assert_eq!(bare["Failed"][0]["Id"], "3");
    }

    #[test]
    fn reordering_reverses_and_defers_the_first() {
        let mut messages = vec![json!(1), json!(2), json!(3)];
        assert_eq!(reorder(&mut messages), Some(json!(1)));
        assert_eq!(messages, [json!(3), json!(2)]);
        assert_eq!(max_messages(&json!({"MaxNumberOfMessages": 10})), 10);
        assert_eq!(max_messages(&json!({})), 1);
    }
}
