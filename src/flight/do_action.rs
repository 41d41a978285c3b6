//! DoAction and ListActions: Bridge's `refresh` (re-list now) and `status` (what each dataset
//! holds), which take an optional JSON body `{"dataset": "yellow"}` (all datasets when empty) and
//! answer one JSON result; Flight's `CancelFlightInfo`; and Flight SQL's prepared statements.

use arrow_flight::{Action, ActionType};
use serde_json::{json, Value};
use tonic::Status;

use super::sql;
use crate::{catalog::Dataset, error::Error, state::AppState};

pub fn list_actions() -> Vec<ActionType> {
    vec![
        ActionType {
            r#type: "refresh".into(),
            description: "Re-list the dataset(s) now and ingest what changed. Body: optional {\"dataset\": NAME}. \
                          Returns {\"versions\": {NAME: manifest_version}}."
                .into(),
        },
        ActionType {
            r#type: "CancelFlightInfo".into(),
            description: "Cancel the running queries of a FlightInfo's endpoints. Body: CancelFlightInfoRequest."
                .into(),
        },
        ActionType {
            r#type: "CreatePreparedStatement".into(),
            description: "Flight SQL: prepare a SELECT. Body: Any(ActionCreatePreparedStatementRequest).".into(),
        },
        ActionType {
            r#type: "ClosePreparedStatement".into(),
            description: "Flight SQL: close a prepared statement (handles hold no server state).".into(),
        },
        ActionType {
            r#type: "status".into(),
            description: "Per dataset: manifest version, files (key, ETag, size, rows), quarantined files with \
                          reasons, files waiting to be retried, ingest progress (files done and total, rows/s, \
                          ETA), the last listing time and its error; the replicas this one sees. Body: optional {\"dataset\": NAME}."
                .into(),
        },
    ]
}

/// The datasets an action's body names: `{"dataset": "..."}`, or all of them.
fn targets<'a>(state: &'a AppState, body: &[u8]) -> Result<Vec<&'a std::sync::Arc<Dataset>>, Status> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(state.catalog().datasets().collect());
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("action body must be JSON like {{\"dataset\": \"yellow\"}}: {e}")))?;
    let name = v.get("dataset").and_then(Value::as_str).ok_or_else(|| {
        Error::invalid("action body needs \"dataset\": a dataset name (or send an empty body for all)")
    })?;
    Ok(vec![state.catalog().dataset(name)?])
}

/// The action's results (each one `Result` body).
pub async fn do_action(state: &AppState, action: Action) -> Result<Vec<Vec<u8>>, Status> {
    let out = match action.r#type.as_str() {
        "CancelFlightInfo" => return Ok(vec![state.running().cancel_flight_info(&action.body)?]),
        "CreatePreparedStatement" => return Ok(vec![sql::prepared::create(state, &action.body).await?]),
        "ClosePreparedStatement" => return sql::prepared::close(&action.body).map(|()| Vec::new()),
        "BeginTransaction" | "EndTransaction" | "BeginSavepoint" | "EndSavepoint" => {
            return Err(Status::invalid_argument(
                "Bridge is read-only and has no transactions: every query sees one consistent snapshot",
            ))
        }
        "refresh" => {
            let mut versions = serde_json::Map::new();
            for ds in targets(state, &action.body)? {
                let version = state.catalog().refresh(ds).await?;
                versions.insert(ds.name.clone(), json!(version));
            }
            json!({ "versions": versions })
        }
        "status" => {
            json!({
                "datasets": targets(state, &action.body)?.iter().map(|d| d.describe()).collect::<Vec<_>>(),
                "segments": state.catalog().tier().usage(),
                "cluster": state.cluster().describe(),
            })
        }
        other => {
            return Err(Status::unimplemented(format!(
                "unknown action {other:?}; the actions are refresh, status, CancelFlightInfo, \
                 CreatePreparedStatement, ClosePreparedStatement (see ListActions)"
            )))
        }
    };
    Ok(vec![out.to_string().into_bytes()])
}
