//! The one error type of the feedback service.

use churnguard_domain::feedback::complaint::ComplaintError;
use churnguard_domain::feedback::outreach::OutreachError;
use churnguard_domain::{FieldViolation, Violations};
use churnguard_eventlog::LogError;
use churnguard_vault::VaultError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `domain` of every `google.rpc.ErrorInfo` this service returns.
pub const ERROR_DOMAIN: &str = "feedback.churnguard";

#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    /// The aggregate refused the command (bad input, wrong status, stale version...).
    #[error(transparent)]
    Complaint(#[from] ComplaintError),
    /// The outreach aggregate refused the command.
    #[error(transparent)]
    Outreach(#[from] OutreachError),
    /// Another command on the complaint was decided on the same version and came first
    /// in the log.
    #[error(
        "version conflict: the command was decided on version {expected}, the complaint is at {current}"
    )]
    Conflict { expected: u64, current: u64 },
    #[error("event log: {0}")]
    Log(#[from] LogError),
    #[error("redis {command}: {source}")]
    Redis {
        command: &'static str,
        #[source]
        source: redis::RedisError,
    },
    /// A stored value that does not parse: the read model needs a rebuild from the log.
    #[error("corrupt read model: {0}")]
    Corrupt(String),
    /// The writer's record is in the log but the projection did not reach it in time; the
    /// command may still take effect.
    #[error("the projection did not reach offset {offset} of partition {partition} in time")]
    Timeout { partition: u32, offset: u64 },
    /// Sealing or opening contact details failed (never carries contact data).
    #[error("contact vault: {0}")]
    Vault(#[from] VaultError),
    /// The caller may not do this ([`crate::api::access`]): `field` names what decides
    /// (`authorization`: who the caller is; `store_id`: the store asked for). Never
    /// for a complaint the caller may not see: that one does not exist, to them.
    #[error("{field}: {message}")]
    Forbidden {
        field: &'static str,
        message: String,
    },
}

/// Redis errors of the shared store helpers (checkpoints), the one place they map.
impl From<churnguard_redis::StoreError> for FeedbackError {
    fn from(e: churnguard_redis::StoreError) -> Self {
        use churnguard_redis::StoreError;
        match e {
            StoreError::Command { command, source } => FeedbackError::Redis { command, source },
            StoreError::Connect(source) => FeedbackError::Redis {
                command: "connect",
                source,
            },
            StoreError::Corrupt(v) => FeedbackError::Corrupt(format!("checkpoint {v:?}")),
            StoreError::Tls { key, message } => FeedbackError::Redis {
                command: "connect",
                source: (
                    redis::ErrorKind::InvalidClientConfig,
                    "invalid TLS settings",
                    format!("{key}: {message}"),
                )
                    .into(),
            },
        }
    }
}

impl FeedbackError {
    /// The field violations, when the input was bad.
    pub fn violations(&self) -> Option<&Violations> {
        match self {
            FeedbackError::Complaint(ComplaintError::Invalid(v))
            | FeedbackError::Outreach(OutreachError::Invalid(v)) => Some(v),
            _ => None,
        }
    }

    /// One bad request field, for input the adapter checks before the domain does
    /// (a missing message, an unparsable timestamp).
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        FeedbackError::Complaint(ComplaintError::Invalid(Violations(vec![
            FieldViolation::new(field, description),
        ])))
    }

    /// Trouble that passes (the log or Redis briefly unreachable or slow): retry.
    pub fn is_retriable(&self) -> bool {
        match self {
            FeedbackError::Redis { source, .. } => churnguard_redis::is_transient(source),
            FeedbackError::Log(e) => e.is_retriable(),
            FeedbackError::Vault(e) => e.is_retriable(),
            FeedbackError::Complaint(_)
            | FeedbackError::Outreach(_)
            | FeedbackError::Conflict { .. }
            | FeedbackError::Corrupt(_)
            | FeedbackError::Timeout { .. }
            | FeedbackError::Forbidden { .. } => false,
        }
    }

    /// The status a caller sees: the one place errors become gRPC. Internal details
    /// (Redis, log and vault errors) stay in our logs, never in the status.
    pub fn status(&self) -> Status {
        match self {
            FeedbackError::Complaint(ComplaintError::Invalid(v))
            | FeedbackError::Outreach(OutreachError::Invalid(v)) => {
                churnguard_runtime::status::invalid_argument(self.to_string(), v)
            }
            FeedbackError::Complaint(ComplaintError::VersionConflict { expected, current })
            | FeedbackError::Outreach(OutreachError::VersionConflict { expected, current })
            | FeedbackError::Conflict { expected, current } => Status::with_error_details(
                Code::Aborted,
                self.to_string(),
                ErrorDetails::with_error_info(
                    "VERSION_CONFLICT",
                    ERROR_DOMAIN,
                    [
                        ("expected_version".to_owned(), expected.to_string()),
                        ("current_version".to_owned(), current.to_string()),
                    ],
                ),
            ),
            FeedbackError::Complaint(ComplaintError::NotFound) => {
                Status::not_found("no such complaint")
            }
            FeedbackError::Forbidden { field, .. } => Status::with_error_details(
                Code::PermissionDenied,
                self.to_string(),
                ErrorDetails::with_error_info(
                    "PERMISSION_DENIED",
                    ERROR_DOMAIN,
                    [("field".to_owned(), (*field).to_owned())],
                ),
            ),
            FeedbackError::Complaint(e @ ComplaintError::InvalidTransition { from_status, .. }) => {
                precondition(
                    e,
                    "INVALID_TRANSITION",
                    [("status".to_owned(), from_status.as_str().to_owned())],
                )
            }
            FeedbackError::Complaint(e @ ComplaintError::AlreadyExists) => {
                precondition(e, "ALREADY_EXISTS", [])
            }
            FeedbackError::Outreach(OutreachError::NotFound) => {
                Status::not_found("no such outreach case")
            }
            FeedbackError::Outreach(e @ OutreachError::InvalidTransition { from_status, .. }) => {
                precondition(
                    e,
                    "INVALID_TRANSITION",
                    [("status".to_owned(), from_status.as_str().to_owned())],
                )
            }
            FeedbackError::Outreach(e @ OutreachError::AlreadyExists) => {
                precondition(e, "ALREADY_EXISTS", [])
            }
            FeedbackError::Complaint(e @ ComplaintError::AlreadyRecorded { what }) => precondition(
                e,
                "ALREADY_RECORDED",
                [("what".to_owned(), (*what).to_owned())],
            ),
            FeedbackError::Complaint(e @ ComplaintError::NoLevelAbove(level)) => precondition(
                e,
                "NO_LEVEL_ABOVE",
                [("level".to_owned(), level.as_str().to_owned())],
            ),
            FeedbackError::Vault(e @ VaultError::Erased) => precondition(e, "CONTACT_ERASED", []),
            FeedbackError::Vault(VaultError::TooLarge) => {
                FeedbackError::invalid("contact", "too large to seal").status()
            }
            // The record is in the log and may still take effect: exactly what gRPC's
            // DEADLINE_EXCEEDED says ("may be returned even if the operation has completed
            // successfully"). UNAVAILABLE would tell the caller nothing happened. A retry
            // with the same idempotency key is safe either way.
            FeedbackError::Timeout { .. } => Status::deadline_exceeded(
                "the change is in the log but was not applied in time; it may still take \
                 effect: read the complaint, or retry with the same idempotency key",
            ),
            e if e.is_retriable() => {
                Status::unavailable("the complaint store is unavailable: retry")
            }
            FeedbackError::Redis { .. } | FeedbackError::Log(_) | FeedbackError::Vault(_) => {
                Status::internal("the request could not be answered")
            }
            FeedbackError::Corrupt(_) => Status::internal("the complaint read model is corrupt"),
        }
    }

    /// PERMISSION_DENIED naming `field`.
    pub fn forbidden(field: &'static str, message: impl Into<String>) -> Self {
        FeedbackError::Forbidden {
            field,
            message: message.into(),
        }
    }

    pub(crate) fn redis(command: &'static str) -> impl FnOnce(redis::RedisError) -> Self {
        move |source| FeedbackError::Redis { command, source }
    }
}

fn precondition<const N: usize>(
    e: &dyn std::fmt::Display,
    reason: &str,
    metadata: [(String, String); N],
) -> Status {
    Status::with_error_details(
        Code::FailedPrecondition,
        e.to_string(),
        ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata),
    )
}

#[cfg(test)]
mod tests {
    use churnguard_domain::feedback::Level;
    use churnguard_domain::feedback::complaint::ComplaintStatus;

    use super::*;

    fn reason(s: &Status) -> String {
        s.get_details_error_info()
            .map(|i| i.reason)
            .unwrap_or_default()
    }

    #[test]
    fn each_error_has_one_status() {
        let s = FeedbackError::Conflict {
            expected: 3,
            current: 4,
        }
        .status();
        assert_eq!(
            (s.code(), reason(&s).as_str()),
            (Code::Aborted, "VERSION_CONFLICT")
        );
        let info = s.get_details_error_info().expect("info");
        assert_eq!(info.metadata["expected_version"], "3");
        assert_eq!(info.metadata["current_version"], "4");

        for (e, r) in [
            (
                ComplaintError::InvalidTransition {
                    from_status: ComplaintStatus::Resolved,
                    command: "WaitOnCustomer",
                },
                "INVALID_TRANSITION",
            ),
            (ComplaintError::AlreadyExists, "ALREADY_EXISTS"),
            (
                ComplaintError::AlreadyRecorded {
                    what: "satisfaction",
                },
                "ALREADY_RECORDED",
            ),
            (ComplaintError::NoLevelAbove(Level::Owner), "NO_LEVEL_ABOVE"),
        ] {
            let s = FeedbackError::from(e).status();
            assert_eq!(
                (s.code(), reason(&s).as_str()),
                (Code::FailedPrecondition, r)
            );
        }
        assert_eq!(
            FeedbackError::from(ComplaintError::NotFound)
                .status()
                .code(),
            Code::NotFound
        );
        assert_eq!(
            FeedbackError::Timeout {
                partition: 0,
                offset: 9
            }
            .status()
            .code(),
            Code::DeadlineExceeded
        );
        assert_eq!(
            FeedbackError::Log(LogError::Unavailable("down".into()))
                .status()
                .code(),
            Code::Unavailable
        );
        assert_eq!(
            FeedbackError::Corrupt("x".into()).status().code(),
            Code::Internal
        );
        // Redis down, slow or failing over: UNAVAILABLE, whichever way it reaches us
        // (a command, the connection, the shared checkpoint helpers, the vault's store).
        let io = |kind| redis::RedisError::from(std::io::Error::new(kind, "redis"));
        for (what, e) in [
            ("refused", io(std::io::ErrorKind::ConnectionRefused)),
            ("reset", io(std::io::ErrorKind::ConnectionReset)),
            ("broken pipe", io(std::io::ErrorKind::BrokenPipe)),
            ("response timeout", io(std::io::ErrorKind::TimedOut)),
            ("eof", io(std::io::ErrorKind::UnexpectedEof)),
            (
                "loading",
                redis::RedisError::from((
                    redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading),
                    "loading",
                )),
            ),
            (
                "failover",
                redis::RedisError::from((
                    redis::ErrorKind::Server(redis::ServerErrorKind::MasterDown),
                    "master down",
                )),
            ),
        ] {
            let status = FeedbackError::Redis {
                command: "GET",
                source: e,
            }
            .status();
            assert_eq!(status.code(), Code::Unavailable, "{what}");
            assert!(
                !status.message().contains("redis"),
                "no internals: {status:?}"
            );
        }
        let connect = FeedbackError::from(churnguard_redis::StoreError::Connect(io(
            std::io::ErrorKind::TimedOut,
        )));
        assert_eq!(connect.status().code(), Code::Unavailable);
        let store = FeedbackError::from(churnguard_redis::StoreError::Command {
            command: "GET",
            source: io(std::io::ErrorKind::TimedOut),
        });
        assert_eq!(store.status().code(), Code::Unavailable);
        // A script bug is no outage.
        let bad_script = FeedbackError::Redis {
            command: "EVALSHA",
            source: redis::RedisError::from((
                redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                "ERR wrong number of arguments",
            )),
        };
        assert_eq!(bad_script.status().code(), Code::Internal);

        let denied = FeedbackError::forbidden("authorization", "a store gateway may not").status();
        assert_eq!(
            (denied.code(), reason(&denied).as_str()),
            (Code::PermissionDenied, "PERMISSION_DENIED")
        );
        assert_eq!(denied.message(), "authorization: a store gateway may not");
        assert_eq!(
            denied.get_details_error_info().expect("info").metadata["field"],
            "authorization"
        );

        let bad = FeedbackError::invalid("contact.phone", "nope").status();
        assert_eq!(bad.code(), Code::InvalidArgument);
        let fields: Vec<_> = bad
            .get_details_bad_request()
            .expect("bad request")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["contact.phone"]);
    }
}
