//! One error type for Bridge, and its one mapping to gRPC status codes.
//!
//! User errors carry a message a person can act on. Internal details (DuckDB, object store) go to
//! the log; the client sees a short, stable message.

use tonic::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or asks for something impossible: the client must change it.
    #[error("{0}")]
    InvalidArgument(String),
    /// A named thing (dataset, query kind) does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The RPC or command exists in Flight but Bridge does not serve it.
    #[error("{0}")]
    Unimplemented(String),
    /// The object store could not be reached or answered with an error; retrying may help.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// The object store refused Bridge's credentials or configuration; retrying will not help
    /// until an operator fixes it. FAILED_PRECONDITION.
    #[error("object store refused the request: {0}")]
    StoreRefused(String),
    /// The answer is not ready yet (no readable file, a manifest version not reached); the
    /// message says what to wait for. UNAVAILABLE, so clients retry.
    #[error("{0}")]
    NotReady(String),
    /// A query ran out of memory or another resource limit.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The query ran past its deadline and was stopped.
    #[error("the query ran past its deadline (--query-timeout or the client's timeout) and was stopped")]
    DeadlineExceeded,
    /// The query was cancelled (client went away or an interrupt).
    #[error("query cancelled")]
    Cancelled,
    /// A query failed inside DuckDB because of the user's SQL (binder/parser/type errors).
    #[error("{0}")]
    Query(String),
    /// Anything else: a bug or an environment problem. Logged in full, reported briefly.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Error::Internal(msg.to_string())
    }
}

impl From<duckdb::Error> for Error {
    fn from(e: duckdb::Error) -> Self {
        let msg = e.to_string();
        // DuckDB reports the class of error as the message prefix.
        // The user's SQL or values caused these: the client must change the request.
        for prefix in [
            "Parser Error",
            "Binder Error",
            "Catalog Error",
            "Conversion Error",
            "Invalid Input Error",
            "Out of Range Error",
            "Not implemented Error",
            "Mismatch Type Error",
            "Invalid type Error",
            "Syntax Error",
            "Constraint Error",
            "Dependency Error",
            "Parameter Not Resolved Error",
            "Parameter Not Allowed Error",
            "Type Error",
        ] {
            if msg.starts_with(prefix) {
                return Error::Query(msg);
            }
        }
        if msg.contains("INTERRUPT") || msg.contains("Interrupted") {
            return Error::Cancelled;
        }
        if msg.starts_with("Out of Memory Error") {
            return Error::ResourceExhausted(msg);
        }
        if msg.starts_with("Permission Error") {
            return Error::InvalidArgument(format!("refused by the SQL sandbox: {msg}"));
        }
        Error::Internal(msg)
    }
}

impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        match e {
            E::NotFound { path, .. } => Error::NotFound(format!("object {path} not found")),
            // Credentials and configuration do not fix themselves: not retriable.
            e @ (E::Unauthenticated { .. }
            | E::PermissionDenied { .. }
            | E::UnknownConfigurationKey { .. }
            | E::NotSupported { .. }
            | E::NotImplemented { .. }) => Error::StoreRefused(e.to_string()),
            other => Error::Unavailable(other.to_string()),
        }
    }
}

impl From<arrow::error::ArrowError> for Error {
    fn from(e: arrow::error::ArrowError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<parquet::errors::ParquetError> for Error {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(m) | Error::Query(m) => Status::new(Code::InvalidArgument, m),
            Error::NotFound(m) => Status::new(Code::NotFound, m),
            Error::Unimplemented(m) => Status::new(Code::Unimplemented, m),
            Error::Unavailable(m) => {
                tracing::warn!(error = %m, "object store unavailable");
                Status::new(Code::Unavailable, "object store unavailable; retry later")
            }
            Error::NotReady(m) => Status::new(Code::Unavailable, m),
            Error::StoreRefused(m) => {
                tracing::error!(error = %m, "object store refused the credentials or configuration");
                Status::new(
                    Code::FailedPrecondition,
                    "the object store refused Bridge's credentials or configuration; an operator must fix them",
                )
            }
            Error::ResourceExhausted(m) => Status::new(Code::ResourceExhausted, m),
            Error::Cancelled => Status::new(Code::Cancelled, "the query was cancelled"),
            Error::DeadlineExceeded => Status::new(Code::DeadlineExceeded, Error::DeadlineExceeded.to_string()),
            Error::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::new(Code::Internal, "internal error; see the server log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_credentials_and_configuration_are_not_retriable() {
        let denied = object_store::Error::PermissionDenied { path: "k".into(), source: "403".into() };
        assert_eq!(Status::from(Error::from(denied)).code(), Code::FailedPrecondition);
        let unauth = object_store::Error::Unauthenticated { path: "k".into(), source: "401".into() };
        assert_eq!(Status::from(Error::from(unauth)).code(), Code::FailedPrecondition);
        let flaky = object_store::Error::Generic { store: "S3", source: "connection reset".into() };
        assert_eq!(Status::from(Error::from(flaky)).code(), Code::Unavailable);
    }
}
