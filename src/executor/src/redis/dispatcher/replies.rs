//! Reading answers: the one task per executor that reads its reply stream (`XREAD BLOCK`),
//! resolves the waiting callers by job id, and trims what it has read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::redis::Value;
use ::redis::aio::MultiplexedConnection;

use super::state::Dispatch;
use super::{MAX_BATCH, REPLY_BLOCK, REPLY_TRIM_INTERVAL};
use crate::redis::connection::{connection_config, is_connection_error};
use crate::redis::endpoint::Endpoint;
use crate::redis::wire;

/// Reads this instance's reply stream and resolves the waiting callers, reconnecting
/// whenever the connection breaks.
///
/// After a Sentinel failover it goes on from the last id it read: the promoted replica's
/// copy of the stream may lack the newest answers (never replicated), but entries added
/// after the promotion get ids from the clock, above every id read before.
pub(super) async fn reply_loop(dispatch: Arc<Dispatch>, endpoint: Arc<Endpoint>) {
    // The stream is this instance's alone and new, so reading from the start misses
    // nothing and replays nothing.
    let mut last_id = "0-0".to_owned();
    let config = connection_config(
        dispatch.config.connect_timeout,
        REPLY_BLOCK + dispatch.config.command_timeout,
    );
    let mut connection: Option<MultiplexedConnection> = None;
    let mut backoff = Duration::from_millis(50);
    let mut last_trim = Instant::now();
    loop {
        let redis = match &mut connection {
            Some(redis) => redis,
            None => match endpoint
                .connect(&config, dispatch.config.connect_timeout)
                .await
            {
                Ok(redis) => {
                    backoff = Duration::from_millis(50);
                    connection.insert(redis)
                }
                Err(err) => {
                    tracing::debug!(error = %err, "reply reader cannot reach Redis");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let read = ::redis::cmd("XREAD")
            .arg("COUNT")
            .arg(MAX_BATCH)
            .arg("BLOCK")
            .arg(REPLY_BLOCK.as_millis().to_string())
            .arg("STREAMS")
            .arg(&dispatch.reply_key)
            .arg(&last_id)
            .query_async::<Value>(redis)
            .await;
        let reply = match read {
            Ok(Value::Nil) => continue,
            Ok(reply) => reply,
            Err(err) => {
                tracing::debug!(error = %err, "reading the reply stream failed");
                if is_connection_error(&err) {
                    connection = None;
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let mut answered = 0;
        let last = wire::for_each_entry(&reply, |id, fields| {
            let on_line = |job_id: &[u8], line: &str| {
                if let Some(sequence) = wire::parse_number(job_id) {
                    dispatch.line(sequence, line);
                }
            };
            wire::read_replies(fields, on_line, |answer| match answer {
                Some((job_id, result)) => match wire::parse_number(job_id) {
                    Some(sequence) => {
                        answered += 1;
                        dispatch.answer(sequence, result);
                    }
                    None => tracing::warn!(
                        job = %String::from_utf8_lossy(job_id),
                        "ignoring an answer to a job this server did not send"
                    ),
                },
                None => tracing::warn!(
                    id = %String::from_utf8_lossy(id),
                    "ignoring an unreadable answer"
                ),
            });
        });
        dispatch.count_answered(answered);
        let Some(last) = last else { continue };
        last_id = String::from_utf8_lossy(last).into_owned();
        if last_trim.elapsed() >= REPLY_TRIM_INTERVAL {
            // Read answers are not needed again; trimming them now and then keeps the
            // stream short. Best effort: workers cap the stream and let it expire anyway.
            last_trim = Instant::now();
            let trimmed = ::redis::cmd("XTRIM")
                .arg(&dispatch.reply_key)
                .arg("MINID")
                .arg("~")
                .arg(&last_id)
                .query_async::<()>(redis)
                .await;
            if let Err(err) = trimmed
                && is_connection_error(&err)
            {
                connection = None;
            }
        }
    }
}
