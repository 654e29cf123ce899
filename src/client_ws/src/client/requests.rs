//! Sending one request and reading its answer: ids, the in-flight slots
//! that cap requests at the server's own limit, timeouts, decoding.

use std::sync::atomic::Ordering;
use std::time::Duration;

use circle_protocol::{Id, ResponseError, write_request};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::CircleWsClient;
use crate::connection::Connection;
use crate::error::CircleWsClientError;
use crate::rt;

impl CircleWsClient {
    pub(super) async fn call<P: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        params: P,
    ) -> Result<R, CircleWsClientError> {
        let connection = self.connection_for_request().await?;
        self.call_on(&connection, method, params).await
    }

    pub(crate) async fn call_on<P: Serialize, R: DeserializeOwned>(
        &self,
        connection: &Connection,
        method: &str,
        params: P,
    ) -> Result<R, CircleWsClientError> {
        let deadline = rt::deadline_after(self.shared.request_timeout);
        // Waiting for a slot counts against the request's own timeout.
        let _slot = self.in_flight_slot(method, deadline).await?;
        self.exchange(connection, method, params, deadline).await
    }

    /// One of the slots that cap the requests in flight, waited for until
    /// `deadline` (a timeout of `method` after that).
    pub(crate) async fn in_flight_slot(
        &self,
        method: &str,
        deadline: web_time::Instant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, CircleWsClientError> {
        rt::timeout_at(
            deadline,
            self.shared.in_flight_slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| CircleWsClientError::Timeout {
            operation: method.to_owned(),
            after: self.shared.request_timeout,
        })?
        // The semaphore is never closed.
        .map_err(|_| CircleWsClientError::NotConnected)
    }

    /// Sends one request on `connection` and waits, until `deadline`, for
    /// its answer, without taking an in-flight slot: for `cancel`, which
    /// must get through while the plays it stops hold every slot.
    pub(crate) async fn exchange<P: Serialize, R: DeserializeOwned>(
        &self,
        connection: &Connection,
        method: &str,
        params: P,
        deadline: web_time::Instant,
    ) -> Result<R, CircleWsClientError> {
        let (id, text) = self.request_text(method, &params)?;
        let response = connection
            .call(id, text, method, deadline, self.shared.request_timeout)
            .await?;
        decode_answer(method, response)
    }

    /// A fresh request id and the request's text.
    pub(crate) fn request_text<P: Serialize>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(i64, String), CircleWsClientError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let text = write_request(&Id::Number(id), method, params).map_err(|e| {
            CircleWsClientError::Protocol(format!("cannot encode the {method} request: {e}"))
        })?;
        Ok((id, text))
    }

    /// How long a request may wait for its answer.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.shared.request_timeout
    }
}

/// The result of `method` from its answer, or the error the server sent
/// (`-32006` becomes [`Cancelled`](CircleWsClientError::Cancelled)).
pub(crate) fn decode_answer<R: DeserializeOwned>(
    method: &str,
    response: circle_protocol::Response,
) -> Result<R, CircleWsClientError> {
    response.into_result().map_err(|error| match error {
        ResponseError::Rpc(error) => error.into(),
        ResponseError::UnexpectedResult(e) => CircleWsClientError::Protocol(format!(
            "the {method} result has an unexpected shape: {e}"
        )),
        other => CircleWsClientError::Protocol(format!("the {method} answer: {other}")),
    })
}
