//! SQS's wire protocol as aws-sdk-sqs speaks it (AWS JSON 1.0, query-compatible), and the
//! errors the layer may answer with: only those the API reference documents for the operation
//! (docs/adr/0018-sqs-fault-layer-speaks-the-documented-errors.md says where each comes from).
//!
//! A request is `POST /` with `X-Amz-Target: AmazonSQS.<Operation>`, `Content-Type:
//! application/x-amz-json-1.0` and a JSON body naming the queue (`QueueUrl`). An error answer
//! carries the error's HTTP status, `x-amzn-query-error: <legacy code>;Sender|Receiver` (the SDK
//! reads the code from it first) and `{"__type": "<namespace>#<shape>", "message": "..."}`.

use serde_json::{Value, json};

/// The header naming the operation.
pub const TARGET_HEADER: &str = "x-amz-target";
/// What every SQS target starts with.
pub const TARGET_PREFIX: &str = "AmazonSQS.";
/// The content type of requests and answers.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// The header carrying the legacy (query protocol) error code and who is at fault.
pub const QUERY_ERROR_HEADER: &str = "x-amzn-query-error";
/// The request id header every SQS answer carries.
pub const REQUEST_ID_HEADER: &str = "x-amzn-requestid";

macro_rules! operations {
    ($($name:ident),* $(,)?) => {
        /// An SQS API operation (the 23 of API version 2012-11-05).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[allow(missing_docs)]
        pub enum Operation { $($name),* }

        impl Operation {
            /// Every operation.
            pub const ALL: &'static [Operation] = &[$(Operation::$name),*];

            /// The name as AWS spells it (`SendMessageBatch`).
            pub fn name(self) -> &'static str {
                match self { $(Operation::$name => stringify!($name)),* }
            }
        }
    };
}

operations!(
    AddPermission,
    CancelMessageMoveTask,
    ChangeMessageVisibility,
    ChangeMessageVisibilityBatch,
    CreateQueue,
    DeleteMessage,
    DeleteMessageBatch,
    DeleteQueue,
    GetQueueAttributes,
    GetQueueUrl,
    ListDeadLetterSourceQueues,
    ListMessageMoveTasks,
    ListQueueTags,
    ListQueues,
    PurgeQueue,
    ReceiveMessage,
    RemovePermission,
    SendMessage,
    SendMessageBatch,
    SetQueueAttributes,
    StartMessageMoveTask,
    TagQueue,
    UntagQueue,
);

impl Operation {
    /// The operation an `X-Amz-Target` header names.
    pub fn from_target(target: &str) -> Option<Self> {
        target.strip_prefix(TARGET_PREFIX)?.parse().ok()
    }

    /// The single-message form of a batch operation (whose documented errors its entries
    /// may fail with); `None` for other operations.
    pub fn single(self) -> Option<Self> {
        match self {
            Self::SendMessageBatch => Some(Self::SendMessage),
            Self::DeleteMessageBatch => Some(Self::DeleteMessage),
            Self::ChangeMessageVisibilityBatch => Some(Self::ChangeMessageVisibility),
            _ => None,
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Operation {
    type Err = anyhow::Error;

    /// `SendMessageBatch`, any case, dashes and underscores ignored (`send-message-batch`).
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let wanted: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .iter()
            .copied()
            .find(|op| op.name().to_ascii_lowercase() == wanted)
            .ok_or_else(|| anyhow::anyhow!("{s:?} is not an SQS operation (e.g. SendMessageBatch)"))
    }
}

/// Which operations the API reference documents an error for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DocumentedFor {
    /// A common error: every action of every service ("Common Errors").
    Every,
    /// The operations whose reference page lists it.
    Only(&'static [Operation]),
}

/// An error SQS documents: what the layer puts on the wire when it answers with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AwsError {
    /// The code the SDK reports (`ProvideErrorMetadata::code`): the legacy query code, which
    /// `x-amzn-query-error` carries.
    pub code: &'static str,
    /// `__type`: the Smithy shape id for errors of the SQS model, the bare code for common
    /// errors (whose namespace the reference does not give).
    pub type_name: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// Whether the caller is at fault (4xx: `Sender`) or SQS is (5xx: `Receiver`).
    pub sender_fault: bool,
    /// The human message.
    pub message: &'static str,
    documented_for: DocumentedFor,
}

/// `RequestThrottled` (403): SQS's own throttling error, documented for every operation.
pub const REQUEST_THROTTLED: AwsError = AwsError {
    code: "RequestThrottled",
    type_name: "com.amazonaws.sqs#RequestThrottled",
    status: 403,
    sender_fault: true,
    message: "The request was denied due to request throttling.",
    documented_for: DocumentedFor::Only(Operation::ALL),
};

/// `ThrottlingException` (400): the common throttling error of every AWS API.
pub const THROTTLING_EXCEPTION: AwsError = AwsError {
    code: "ThrottlingException",
    type_name: "ThrottlingException",
    status: 400,
    sender_fault: true,
    message: "Rate exceeded",
    documented_for: DocumentedFor::Every,
};

/// `InternalFailure` (500): the common "unknown error" (the brief's InternalError).
pub const INTERNAL_FAILURE: AwsError = AwsError {
    code: "InternalFailure",
    type_name: "InternalFailure",
    status: 500,
    sender_fault: false,
    message: "The request processing has failed because of an unknown error, exception or failure.",
    documented_for: DocumentedFor::Every,
};

/// `ServiceUnavailable` (503): the common temporary failure.
pub const SERVICE_UNAVAILABLE: AwsError = AwsError {
    code: "ServiceUnavailable",
    type_name: "ServiceUnavailable",
    status: 503,
    sender_fault: false,
    message: "The request has failed due to a temporary failure of the server.",
    documented_for: DocumentedFor::Every,
};

/// `ReceiptHandleIsInvalid` (404) of DeleteMessage and ChangeMessageVisibility.
pub const RECEIPT_HANDLE_IS_INVALID: AwsError = AwsError {
    code: "ReceiptHandleIsInvalid",
    type_name: "com.amazonaws.sqs#ReceiptHandleIsInvalid",
    status: 404,
    sender_fault: true,
    message: "The input receipt handle is not a valid receipt handle.",
    documented_for: DocumentedFor::Only(&[
        Operation::DeleteMessage,
        Operation::ChangeMessageVisibility,
    ]),
};

/// `MessageNotInflight` (400) of ChangeMessageVisibility.
pub const MESSAGE_NOT_INFLIGHT: AwsError = AwsError {
    code: "AWS.SimpleQueueService.MessageNotInflight",
    type_name: "com.amazonaws.sqs#MessageNotInflight",
    status: 400,
    sender_fault: true,
    message: "The specified message isn't in flight.",
    documented_for: DocumentedFor::Only(&[Operation::ChangeMessageVisibility]),
};

/// `OverLimit` (403) of ReceiveMessage: too many messages in flight.
pub const OVER_LIMIT: AwsError = AwsError {
    code: "OverLimit",
    type_name: "com.amazonaws.sqs#OverLimit",
    status: 403,
    sender_fault: true,
    message: "The maximum number of inflight messages is reached.",
    documented_for: DocumentedFor::Only(&[
        Operation::ReceiveMessage,
        Operation::AddPermission,
        Operation::SetQueueAttributes,
    ]),
};

/// Every error the layer can answer with.
pub const CATALOG: [AwsError; 7] = [
    REQUEST_THROTTLED,
    THROTTLING_EXCEPTION,
    INTERNAL_FAILURE,
    SERVICE_UNAVAILABLE,
    RECEIPT_HANDLE_IS_INVALID,
    MESSAGE_NOT_INFLIGHT,
    OVER_LIMIT,
];

impl AwsError {
    /// The error named `name`: its code or shape name, any case
    /// (`RequestThrottled`, `MessageNotInflight`, `internalfailure`).
    pub fn named(name: &str) -> anyhow::Result<Self> {
        let wanted = name.to_ascii_lowercase();
        CATALOG
            .iter()
            .copied()
            .find(|e| {
                e.code.to_ascii_lowercase() == wanted || e.shape().to_ascii_lowercase() == wanted
            })
            .ok_or_else(|| {
                let names: Vec<&str> = CATALOG.iter().map(|e| e.shape()).collect();
                anyhow::anyhow!(
                    "{name:?} is not an error the layer answers ({})",
                    names.join(", ")
                )
            })
    }

    /// The shape name (`MessageNotInflight`), the last part of `type_name`.
    pub fn shape(&self) -> &'static str {
        self.type_name
            .rsplit_once('#')
            .map_or(self.type_name, |(_, shape)| shape)
    }

    /// Whether the API reference documents this error for `operation` (`None`: for every
    /// operation, as a rule without an operation applies to all).
    pub fn documented_for(&self, operation: Option<Operation>) -> bool {
        match (self.documented_for, operation) {
            (DocumentedFor::Every, _) => true,
            (DocumentedFor::Only(ops), Some(op)) => ops.contains(&op),
            (DocumentedFor::Only(ops), None) => ops.len() == Operation::ALL.len(),
        }
    }

    /// Whether a batch entry of `operation` may fail with this error: the errors documented
    /// for its single-message form, and the common ones.
    pub fn documented_for_entries_of(&self, operation: Operation) -> bool {
        operation
            .single()
            .is_some_and(|single| self.documented_for(Some(single)))
    }

    /// `x-amzn-query-error`'s value.
    pub fn query_error(&self) -> String {
        let fault = if self.sender_fault {
            "Sender"
        } else {
            "Receiver"
        };
        format!("{};{fault}", self.code)
    }

    /// The JSON body of the error answer.
    pub fn body(&self) -> Value {
        json!({"__type": self.type_name, "message": self.message})
    }

    /// A `BatchResultErrorEntry` for the batch entry `id`.
    pub fn entry(&self, id: &str) -> Value {
        json!({
            "Id": id,
            "Code": self.code,
            "SenderFault": self.sender_fault,
            "Message": self.message,
        })
    }
}

/// The queue a request is about: the last path segment of its `QueueUrl`, or its `QueueName`
/// (CreateQueue, GetQueueUrl). `None` for requests about no queue (ListQueues).
pub fn queue_name(request: &Value) -> Option<String> {
    if let Some(url) = request.get("QueueUrl").and_then(Value::as_str) {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        return path
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .filter(|name| !name.is_empty())
            .map(str::to_string);
    }
    request
        .get("QueueName")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_come_from_the_target_header() {
        assert_eq!(
            Operation::from_target("AmazonSQS.SendMessageBatch"),
            Some(Operation::SendMessageBatch)
        );
        assert_eq!(Operation::from_target("DynamoDB_20120810.GetItem"), None);
        assert_eq!(
            "change-message-visibility"
                .parse::<Operation>()
                .expect("operation"),
            Operation::ChangeMessageVisibility
        );
    }

    #[test]
    fn queues_are_named_by_the_last_segment_of_their_url() {
        for url in [
            "http://127.0.0.1:4566/000000000000/scope-1-entries",
            "http://sqs.us-east-1.localhost.localstack.cloud:4566/000000000000/scope-1-entries",
            "http://localstack:4566/queue/us-east-1/000000000000/scope-1-entries/",
        ] {
            assert_eq!(
                queue_name(&json!({"QueueUrl": url})).as_deref(),
                Some("scope-1-entries"),
                "{url}"
            );
        }
        assert_eq!(queue_name(&json!({"QueueName": "q"})).as_deref(), Some("q"));
        assert_eq!(queue_name(&json!({})), None);
    }

    #[test]
    fn errors_are_answered_only_where_documented() {
        assert!(REQUEST_THROTTLED.documented_for(Some(Operation::SendMessageBatch)));
        assert!(REQUEST_THROTTLED.documented_for(None));
        assert!(INTERNAL_FAILURE.documented_for(Some(Operation::ReceiveMessage)));
        assert!(RECEIPT_HANDLE_IS_INVALID.documented_for(Some(Operation::DeleteMessage)));
        assert!(!RECEIPT_HANDLE_IS_INVALID.documented_for(Some(Operation::SendMessage)));
        assert!(!OVER_LIMIT.documented_for(None));
        assert!(RECEIPT_HANDLE_IS_INVALID.documented_for_entries_of(Operation::DeleteMessageBatch));
        assert!(!RECEIPT_HANDLE_IS_INVALID.documented_for_entries_of(Operation::SendMessageBatch));
        assert!(INTERNAL_FAILURE.documented_for_entries_of(Operation::SendMessageBatch));
        assert!(!INTERNAL_FAILURE.documented_for_entries_of(Operation::ReceiveMessage));
    }

    #[test]
    fn errors_are_named_by_code_or_shape() {
        assert_eq!(
            AwsError::named("MessageNotInflight").expect("error"),
            MESSAGE_NOT_INFLIGHT
        );
        assert_eq!(
            AwsError::named("aws.simplequeueservice.messagenotinflight").expect("error"),
            MESSAGE_NOT_INFLIGHT
        );
        assert_eq!(REQUEST_THROTTLED.query_error(), "RequestThrottled;Sender");
        assert_eq!(INTERNAL_FAILURE.query_error(), "InternalFailure;Receiver");
        assert!(AwsError::named("Teapot").is_err());
    }
}
