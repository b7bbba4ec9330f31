//! The worker's HTTP client for the ATS: hyper's pooled HTTP/1 client, with the
//! request parts every call shares made once.
//!
//! The worker makes two ATS calls per event. reqwest, which the relay used before,
//! parsed each request's URL three times over (its own `Url`, its redirect policy's
//! copy, the URI) and ran it through redirect and retry layers the relay never uses;
//! here the URI is built from the normalised base once per call, the bearer header is
//! made once, and the pooled connections are the same keep-alive ones.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName};
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};

/// How long one call may take, answer's body included (reqwest's total timeout before).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The ATS's base URL, token and pooled connections.
#[derive(Clone)]
pub(super) struct Ats {
    client: crate::http::PooledClient,
    /// The base URL as a URL parser writes it, without a trailing `/`.
    base: String,
    /// `Bearer <token>`, marked sensitive; `None` when the token cannot be a header
    /// (every call then fails, as a request that cannot be sent).
    auth: Option<HeaderValue>,
}

/// A call that could not be made or was not answered in time.
#[derive(Debug)]
pub(super) struct CallFailed;

/// The ATS's answer: status and headers, the body read only when asked for.
pub(super) struct Answer {
    /// The answer's status.
    pub status: StatusCode,
    /// The answer's headers.
    pub headers: HeaderMap,
    body: hyper::body::Incoming,
    deadline: tokio::time::Instant,
}

impl Answer {
    /// The body, read within the call's time.
    pub async fn bytes(self) -> Result<Bytes, CallFailed> {
        match tokio::time::timeout_at(self.deadline, self.body.collect()).await {
            Ok(Ok(body)) => Ok(body.to_bytes()),
            _ => Err(CallFailed),
        }
    }
}

impl Ats {
    /// A client for the ATS at `base_url`, authenticating with `token`.
    pub fn new(base_url: &str, token: &str) -> Self {
        let base = url::Url::parse(base_url).map_or_else(
            |_| base_url.to_owned(),
            |url| url.as_str().trim_end_matches('/').to_owned(),
        );
        let auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .ok()
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        Ats {
            // The harness's sender's client: set up as reqwest's default one was.
            client: crate::http::pooled_client(),
            base,
            auth,
        }
    }

    /// `path` under the base URL as a URI, read the way a URL parser reads it: a
    /// candidate id holding characters a path cannot is percent-encoded, not refused.
    fn uri(&self, path: &str) -> Option<Uri> {
        let text = format!("{}{path}", self.base);
        // Only letters, digits and `-_~/` cannot change under URL parsing: the common
        // case skips the parser.
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~' | b'/');
        if path.bytes().all(plain) && !self.base.contains(['?', '#']) {
            return Uri::try_from(text).ok();
        }
        url::Url::parse(&text).ok()?.as_str().parse().ok()
    }

    /// Sends `method path` with `headers` and a JSON `body`, and waits for the answer's
    /// status and headers.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(HeaderName, &str)],
        body: Option<Bytes>,
    ) -> Result<Answer, CallFailed> {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let (Some(uri), Some(auth)) = (self.uri(path), &self.auth) else {
            return Err(CallFailed);
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, auth.clone());
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        let request = match body {
            Some(body) => request
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(Full::new(body)),
            None => request.body(Full::default()),
        }
        .map_err(|_| CallFailed)?;
        let response = tokio::time::timeout_at(deadline, self.client.request(request))
            .await
            .map_err(|_| CallFailed)?
            .map_err(|_| CallFailed)?;
        let (parts, body) = response.into_parts();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
            deadline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_what_a_url_parser_makes_of_them() {
        // (base, path, URI, why)
        let rows = [
            (
                "http://127.0.0.1:4000",
                "/v1/candidates/CAND_000002_cl",
                "http://127.0.0.1:4000/v1/candidates/CAND_000002_cl",
                "the common case",
            ),
            (
                "HTTP://LocalHost:80/",
                "/v1/exceptions",
                "http://localhost/v1/exceptions",
                "the base is normalised once",
            ),
            (
                "http://ats.test/api",
                "/v1/candidates/a b\"c",
                "http://ats.test/api/v1/candidates/a%20b%22c",
                "a path cannot hold a space or a quote: encoded",
            ),
            (
                "http://ats.test",
                "/v1/candidates/x/../y.z",
                "http://ats.test/v1/candidates/y.z",
                "dot segments resolve as URL parsing does",
            ),
        ];
        for (base, path, expected, why) in rows {
            let ats = Ats::new(base, "token");
            let uri = ats.uri(path).map(|uri| uri.to_string());
            assert_eq!(uri.as_deref(), Some(expected), "{why}");
        }
    }

    #[test]
    fn a_token_that_cannot_be_a_header_fails_each_call_instead_of_panicking() {
        let ats = Ats::new("http://127.0.0.1:1", "bad\ntoken");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sent = runtime.block_on(ats.send(Method::GET, "/v1/candidates/x", &[], None));
        assert!(sent.is_err());
    }
}
