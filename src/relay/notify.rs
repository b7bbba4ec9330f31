//! Kill-switch notifications (docs/integration-protocol.md §4): every change of the switch
//! is posted to every `notify_channels` channel of the manifest.
//!
//! One task posts the notices in the order the switch changed, so a channel never
//! hears "reset" before "tripped"; the channels of one notice are posted at once.
//! A failed post is retried briefly and then given up — a chat outage must not hold
//! up the relay — and every post, delivered or not, is one JSON log line.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;

use super::log::RelayLog;

/// Posts per channel and notice, the first included.
const ATTEMPTS: u32 = 4;
/// Wait before the first retry; doubles after each.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(2);

pub use crate::protocol::SwitchState;

/// One change of the switch, to tell every channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Tripped or reset.
    pub state: SwitchState,
    /// Why, for people.
    pub text: String,
}

/// Where notices go.
#[derive(Debug, Clone)]
pub struct Channels {
    /// The sink's base URL.
    pub base_url: String,
    /// The channels, as the manifest names them (`#recruiting-ops`).
    pub channels: Vec<String>,
    /// The kill switch's name.
    pub kill_switch: String,
}

/// The URL of a channel, its name as one URL-encoded path segment.
pub fn channel_url(base_url: &str, channel: &str) -> Option<url::Url> {
    let mut url = url::Url::parse(base_url).ok()?;
    url.path_segments_mut()
        .ok()?
        .pop_if_empty()
        .extend(["v1", "channels", channel]);
    Some(url)
}

/// Posts every notice to every channel until the sending side closes.
pub(super) async fn run(mut notices: UnboundedReceiver<Notice>, to: Channels, log: RelayLog) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(POST_TIMEOUT)
        .build()
        .unwrap_or_default();
    while let Some(notice) = notices.recv().await {
        let mut posts = JoinSet::new();
        for channel in &to.channels {
            posts.spawn(post(
                client.clone(),
                to.clone(),
                channel.clone(),
                notice.clone(),
                log.clone(),
            ));
        }
        while posts.join_next().await.is_some() {}
    }
}

async fn post(
    client: reqwest::Client,
    to: Channels,
    channel: String,
    notice: Notice,
    log: RelayLog,
) {
    let body =
        json!({"text": notice.text, "kill_switch": to.kill_switch, "state": notice.state.as_str()});
    let Some(url) = channel_url(&to.base_url, &channel) else {
        log.note(
            "notify",
            json!({"kill_switch": to.kill_switch, "channel": channel, "state": notice.state.as_str(), "delivered": false, "attempts": 0, "error": "STAGEGATE_NOTIFY_URL is not a base URL"}),
        );
        return;
    };
    let mut wait = FIRST_RETRY;
    let mut attempts = 0;
    let (delivered, status, error) = loop {
        attempts += 1;
        let (status, error) = match client.post(url.clone()).json(&body).send().await {
            Ok(response) => (Some(response.status()), None),
            Err(err) => (None, Some(err.to_string())),
        };
        let delivered = status.is_some_and(|s| s.is_success());
        // A refusal other than overload will not change on retry.
        let hopeless = status.is_some_and(|s| {
            s.is_client_error()
                && s != StatusCode::TOO_MANY_REQUESTS
                && s != StatusCode::REQUEST_TIMEOUT
        });
        if delivered || hopeless || attempts >= ATTEMPTS {
            break (delivered, status, error);
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
    };
    log.note(
        "notify",
        json!({
            "kill_switch": to.kill_switch,
            "channel": channel,
            "state": notice.state.as_str(),
            "delivered": delivered,
            "status": status.map(|s| s.as_u16()),
            "attempts": attempts,
            "error": error,
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_one_encoded_segment() {
        // (base, channel, expected, why)
        let rows = [
            (
                "http://127.0.0.1:9/",
                "#recruiting-ops",
                "http://127.0.0.1:9/v1/channels/%23recruiting-ops",
                "the seed's channels start with #",
            ),
            (
                "http://127.0.0.1:9/hooks",
                "ops/eu team",
                "http://127.0.0.1:9/hooks/v1/channels/ops%2Feu%20team",
                "a slash and a space stay inside the segment; a base path is kept",
            ),
        ];
        for (base, channel, expected, why) in rows {
            assert_eq!(
                channel_url(base, channel).map(String::from).as_deref(),
                Some(expected),
                "{why}"
            );
        }
        assert_eq!(channel_url("not a url", "#x"), None);
    }
}
