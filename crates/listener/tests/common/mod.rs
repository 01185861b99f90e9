//! What the queue tests share: a listener on loopback with one queue
//! (`pool`) that this test process may serve, at `http://+:PORT/app/`.

use listener::{Listener, ListenerConfig, QueueHandle};

/// The listener (its state under `dir`), the controller's handle on the
/// queue, and the port its URL is on.
pub async fn pool_on_loopback(dir: &std::path::Path) -> (Listener, QueueHandle, u16) {
    let listener = Listener::start(ListenerConfig {
        listen_addresses: vec!["127.0.0.1".parse().unwrap()],
        control_socket: dir.join("run/httpapi.sock"),
        url_acl_file: dir.join("urlacl.json"),
        ..ListenerConfig::default()
    })
    .await
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The controller holds the queue before any process exists.
    let pool = listener.create_queue("pool").unwrap();
    // The "started processes" are this test process: the service's queue
    // lets in only the processes it allows.
    pool.queue().allow_process(std::process::id());
    pool.add_url(&format!("http://+:{port}/app/"), 0, Some(1))
        .unwrap();
    (listener, pool, port)
}
