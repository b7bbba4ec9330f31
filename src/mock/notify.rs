//! The notification sink (docs/integration-protocol.md §4): chat channels that hear the
//! kill switch trip and reset.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{error, log_exchange};
use crate::observe::{Actor, Entry, ObservationLog, format_time};

pub use crate::protocol::SwitchState;

/// One message posted to a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// The channel, decoded (`#recruiting-ops`).
    #[serde(default)]
    pub channel: String,
    /// The text for people.
    pub text: String,
    /// The kill switch's name.
    pub kill_switch: String,
    /// Tripped or reset.
    pub state: SwitchState,
    /// When it arrived.
    #[serde(default)]
    pub received_at: String,
}

/// The sink's state.
#[derive(Debug)]
pub struct NotifyState {
    log: ObservationLog,
    messages: Mutex<Vec<Message>>,
}

impl NotifyState {
    /// An empty sink.
    pub fn new(log: ObservationLog) -> Self {
        NotifyState {
            log,
            messages: Mutex::new(Vec::new()),
        }
    }

    /// Every message, in arrival order.
    pub fn messages(&self) -> Vec<Message> {
        self.lock().clone()
    }

    /// The whole state as JSON, for dumps.
    pub fn snapshot(&self) -> Value {
        json!({"messages": self.messages()})
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Message>> {
        self.messages
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// The sink's routes.
pub fn router(state: Arc<NotifyState>) -> Router {
    Router::new()
        .route("/v1/channels/{channel}", post(post_message))
        .fallback(super::no_such_route)
        .layer(from_fn_with_state(
            (state.log.clone(), Actor::Notify),
            log_exchange,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::limits::REQUEST_BODY_BYTES.as_usize(),
        ))
        .layer(axum::middleware::from_fn(super::json_errors))
        .with_state(state)
}

async fn post_message(
    State(state): State<Arc<NotifyState>>,
    Path(channel): Path<String>,
    body: Bytes,
) -> Response {
    let mut message: Message = match serde_json::from_slice(&body) {
        Ok(message) => message,
        Err(err) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid notification",
                json!({"detail": err.to_string(), "expected": {"text": "string", "kill_switch": "string", "state": "tripped | reset"}}),
            );
        }
    };
    message.channel = channel;
    message.received_at = format_time(chrono::Utc::now());
    state.log.append(
        Actor::Notify,
        "notify.message",
        Entry::detail(json!(message)),
    );
    state.lock().push(message);
    (StatusCode::ACCEPTED, axum::Json(json!({"ok": true}))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn channels_are_url_decoded_and_bodies_checked() {
        let state = Arc::new(NotifyState::new(ObservationLog::to_writer(
            Box::new(std::io::sink()),
            "t",
        )));
        let router = router(Arc::clone(&state));
        let post = |body: &str| {
            Request::builder()
                .method("POST")
                .uri("/v1/channels/%23recruiting-ops")
                .body(Body::from(body.to_owned()))
                .expect("request")
        };
        let ok = r#"{"text": "writes paused", "kill_switch": "disable-ats-writeback", "state": "tripped"}"#;
        assert_eq!(
            router
                .clone()
                .oneshot(post(ok))
                .await
                .expect("answers")
                .status(),
            StatusCode::ACCEPTED
        );
        let bad = r#"{"text": "x", "kill_switch": "k", "state": "off"}"#;
        assert_eq!(
            router
                .clone()
                .oneshot(post(bad))
                .await
                .expect("answers")
                .status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let messages = state.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].channel, "#recruiting-ops");
        assert_eq!(messages[0].state, SwitchState::Tripped);
    }
}
