//! IIS 5 isolation mode's raw-data filtering, the worker's side: the
//! listener hands this process every connection's bytes
//! ([`httpapi::RawEvent`]); the global filters see them through
//! SF_NOTIFY_READ_RAW_DATA (before they are parsed) and
//! SF_NOTIFY_SEND_RAW_DATA (on their way out), and the connection's end
//! through SF_NOTIFY_END_OF_NET_SESSION. Each connection keeps its
//! filters' pFilterContext and AllocMem blocks until it closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use httpapi::proto::RawConnection;
use httpapi::RawEvent;

use crate::filters::RequestFilters;
use crate::pipeline::Pipeline;

/// One filtered connection: what it is, and its filters' state.
struct RawConn {
    facts: RawConnection,
    filters: RequestFilters,
}

/// The server variables a filter may ask for before any request: the
/// connection's own.
fn variable(f: &RawConnection, name: &str) -> Option<Vec<u8>> {
    let text = match name {
        "REMOTE_ADDR" | "REMOTE_HOST" => f.remote.ip().to_string(),
        "REMOTE_PORT" => f.remote.port().to_string(),
        "LOCAL_ADDR" => f.local.ip().to_string(),
        "SERVER_PORT" => f.local.port().to_string(),
        "SERVER_PORT_SECURE" => if f.secure { "1" } else { "0" }.to_string(),
        "HTTPS" => if f.secure { "on" } else { "off" }.to_string(),
        "SERVER_SOFTWARE" => "Microsoft-IIS/6.0".to_string(),
        _ => return None,
    };
    Some(text.into_bytes())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves the session's raw-data events until it closes. Filters run on
/// the worker's call pool (the threads extensions run on); one connection's pieces come one at a time (the
/// listener waits for each answer), so its state is never shared.
pub fn serve(pipeline: Arc<Pipeline>, session: httpapi::Session) {
    let Some(mut events) = session.raw_events() else {
        return;
    };
    tokio::spawn(async move {
        let conns: Arc<Mutex<HashMap<u64, Arc<Mutex<RawConn>>>>> = Arc::default();
        while let Some(event) = events.recv().await {
            match event {
                RawEvent::Opened(facts) => {
                    let config = pipeline.config.load();
                    let chain = pipeline.filter_modules.global(&config.snapshot, &|path| {
                        pipeline.module_files.load_as(path, &config.content)
                    });
                    let filters = RequestFilters::new(&chain, facts.secure, facts.conn, None);
                    lock(&conns)
                        .insert(facts.conn, Arc::new(Mutex::new(RawConn { facts, filters })));
                }
                RawEvent::Data {
                    conn,
                    seq,
                    outbound,
                    data,
                } => {
                    let state = lock(&conns).get(&conn).cloned();
                    let session = session.clone();
                    let Some(state) = state else {
                        // Not known here (opened before this worker took
                        // over): passed on unchanged.
                        let _ = session.raw_data_done(conn, seq, data, Vec::new(), false, 0);
                        continue;
                    };
                    pipeline.calls.spawn(move || {
                        let mut state = lock(&state);
                        let RawConn { facts, filters } = &mut *state;
                        let variables = |name: &str| variable(facts, name);
                        let (data, to_client, close) = filters.raw_data(outbound, data, &variables);
                        let next_read = filters.take_next_read();
                        let _ = session.raw_data_done(conn, seq, data, to_client, close, next_read);
                    });
                }
                RawEvent::Closed { conn } => {
                    if let Some(state) = lock(&conns).remove(&conn) {
                        pipeline.calls.spawn(move || {
                            let mut state = lock(&state);
                            let RawConn { facts, filters } = &mut *state;
                            filters.end_of_net_session(&|name: &str| variable(facts, name));
                        });
                    }
                }
            }
        }
    });
}
